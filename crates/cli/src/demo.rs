//! `ferry demo`: the whole story on loopback, with generated images: a two-wave rollout
//! of the update, the device in its first wave installing it, and the fleet and the
//! rollout as the server sees them from the device's event reports. With `--database` and
//! `--store` the same story runs on PostgreSQL and S3, as a fleet of replicas would.

use std::path::Path;
use std::process::ExitCode;

use ferry_agent::boot::reboot;
use ferry_agent::device::Device;
use ferry_agent::provision::{self, InitOptions};
use ferry_agent::report::deliver;
use ferry_agent::{install, status};
use ferry_server::rollouts::NewRollout;
use ferry_server::tuf::{CatalogPaths, KeyCustody};
use ferry_server::{DataDir, Https, PublishRequest, ServiceOptions};
use ferry_types::DeviceId;

use crate::args::DemoArgs;
use crate::failure::Failure;
use crate::images;
use crate::render::{self, ProgressUi};
use crate::rollout_cmds;

const MARKER: &str = ".ferry-demo";
const CLASS: &str = "demo-vm";
/// How long the demo waits for its event reports to reach the server, as a command does.
const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn io_failure(what: &str, e: std::io::Error) -> Failure {
    Failure::new(
        "DEMO_IO",
        format!("the demo could not {what}: {e}"),
        "check the --dir path, its permissions and free space",
    )
}

/// Runs the demo; exits 0 only if the device really runs the new version from slot b.
pub async fn run(a: DemoArgs) -> Result<ExitCode, Failure> {
    let dir = &a.dir;
    prepare_dir(dir)?;
    println!("== ferry demo in {}", dir.display());

    // 1. A server on a free loopback port, on the database and store asked for.
    let data = DataDir::open_with(
        &dir.join("server"),
        a.database.as_deref(),
        a.store.as_deref(),
    )
    .await?;
    require_empty(&data).await?;
    if let Some(url) = &a.database {
        println!(
            "== server database: {} (the commands shown below read it from FERRY_DATABASE or --database)",
            ferry_server::db::redact_url(url)
        );
    }
    if a.store.is_some() {
        println!(
            "== artifact and catalog store: {} (the catalog is served from it)",
            data.store.name()
        );
    }
    // A development catalog: its offline keys in the data directory, which a real server
    // refuses (`ferry server init --keys DIR`).
    ferry_server::tuf::check_custody(&data.path, KeyCustody::DevInDataDir).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| io_failure("listen on loopback", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_failure("read the listen address", e))?;
    // HTTPS with a CA made on first start; the device pins it and enrolls.
    let https = Https::prepare(
        data.clone(),
        Some(addr),
        ServiceOptions::default(),
        KeyCustody::DevInDataDir,
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(https.serve_until(listener, async {
        let _ = stop_rx.await;
    }));
    let url = format!("https://{addr}");
    println!(
        "== server listening on {url} (CA: {})",
        data.path.join("pki/ca.pem").display()
    );

    let result = story(&a, &data, &url).await;

    if a.keep_serving && result.is_ok() {
        keep_serving(&data, &url).await;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    println!("== server stopped");
    result
}

async fn story(a: &DemoArgs, data: &DataDir, url: &str) -> Result<ExitCode, Failure> {
    let dir = &a.dir;
    // 2. Two versions of a system image, published.
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| io_failure("create images/", e))?;
    for (n, version) in [(1, "1.0"), (2, "2.0")] {
        let path = images_dir.join(format!("v{n}.img"));
        let kind =
            images::make(&path, n, a.image_mib).map_err(|e| io_failure("make an image", e))?;
        let row = ferry_server::publish(
            data,
            PublishRequest {
                image: path.clone(),
                version: parse_version(version)?,
                class: CLASS.into(),
                audiences: vec!["customer".into()],
                offline_keys: None,
                build_id: None,
                level: 9,
                delta_from: if n == 2 {
                    vec![parse_version("1.0")?]
                } else {
                    Vec::new()
                },
                chunks: true,
            },
        )
        .await?;
        println!(
            "== published {version} into the signed catalog: {} image, {} as {} download",
            kind,
            render::bytes(row.image_size),
            render::bytes(row.payload_size)
        );
    }

    // 3. A device on the first version, pinning the catalog's root (the demo runs the server
    //    itself, so it can read the root from the server's data directory).
    let root_path = CatalogPaths::new(&data.path, None).latest_root()?;
    let root = std::fs::read(&root_path).map_err(|e| io_failure("read the catalog root", e))?;
    println!("== device pins the catalog root {}", root_path.display());
    let device_dir = dir.join("device");
    let identity = provision::init(
        &device_dir,
        &InitOptions {
            class: CLASS.into(),
            image: images_dir.join("v1.img"),
            version: parse_version("1.0")?,
            server: url.to_owned(),
            audience: "customer".into(),
            slot_size: None,
            boot: ferry_boot::BootBackend::File,
            health_checks: Vec::new(),
            root,
            ca: Some(data.path.join("pki/ca.pem")),
        },
    )?;
    let device = Device::open(&device_dir)?;
    let token = data.db.create_enrollment_token(&Default::default()).await?;
    ferry_agent::trust::personalize::enroll(&device, token.as_str()).await?;
    println!(
        "== device {} made at {} running 1.0, enrolled (CA and personalization key pinned)",
        identity.device_id,
        device_dir.display()
    );

    // 4. A two-wave rollout of 2.0 with the device in its first wave.
    let rollout_id = two_wave_rollout(data, &identity.device_id).await?;

    // 5. List (a scan through TUF), install, reboot, status.
    println!("\n$ ferry list");
    let offers = install::list(&device).await?;
    if let Some(scan) = ferry_agent::trust::catalog::last_scan(&device.dir) {
        println!(
            "(scan: catalog verified from the pinned root, result {}, {} offer(s))",
            scan.result, scan.n_offers
        );
    }
    for o in &offers {
        println!(
            "* Label: {}\n\tTitle: {}, Version: {}, Size: {}, Recommended: {}",
            o.label,
            o.title,
            o.version,
            render::bytes(o.download_size),
            if o.recommended { "YES" } else { "NO" }
        );
    }
    let label = offers.first().map(|o| o.label.clone()).ok_or_else(|| {
        Failure::new(
            "DEMO_NO_OFFER",
            "the device was offered no update",
            "this is a bug in ferry: report it with the demo directory",
        )
    })?;

    println!("\n$ ferry install {label}");
    let ui = ProgressUi::new(false);
    let outcome = install::install(&device, Some(&label), &ui).await;
    ui.finish();
    let outcome = outcome
        .map_err(crate::failure::agent_failure)?
        .ok_or_else(|| {
            Failure::new(
                "DEMO_NO_OFFER",
                "nothing was installed",
                "this is a bug in ferry",
            )
        })?;
    println!(
        "installed {} into slot {} ({} downloaded)",
        outcome.version,
        outcome.slot,
        render::bytes(outcome.bytes_downloaded)
    );

    // What `ferry install` does at its end: the queued event reports go to the server.
    deliver::deliver_within(&device, DELIVERY_WAIT).await;

    println!("\n$ ferry reboot");
    let r = reboot::reboot(&device, false)?;
    let delivered = deliver::deliver_within(&device, DELIVERY_WAIT).await;
    if let Some(f) = &r.failure {
        println!("slot failed its check: {} [{}]", f.cause, f.code);
    }
    println!("running {} from slot {}", r.version, r.running);

    println!("\n$ ferry status");
    let s = status::status(&device)?;
    println!(
        "running {} on slot {}; slots: {}",
        s.version,
        s.running_slot,
        s.slots
            .iter()
            .map(|x| format!(
                "{}={}",
                x.slot,
                x.content
                    .as_ref()
                    .map_or("empty".into(), |c| c.version.to_string())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "\n$ ferry server fleet --data {}   (the device's event reports, on the server)",
        data.path.display()
    );
    let fleet = data.db.fleet_summary().await?;
    crate::fleet_cmds::print_fleet(&fleet);
    let reported = fleet.device_states.iter().find(|d| {
        d.device_id == identity.device_id.to_string()
            && d.status == "committed"
            && d.version.as_deref() == Some("2.0")
            && !d.phases.is_empty()
    });
    if reported.is_none() {
        return Err(Failure::new(
            "DEMO_FAILED",
            format!(
                "the server does not show the device's committed update with its phases ({} report(s) still queued{})",
                delivered.remaining,
                delivered
                    .failure
                    .map(|f| format!(", last delivery failed with {}", f.code))
                    .unwrap_or_default()
            ),
            format!(
                "inspect the outbox with `ferry status --device {}`",
                device_dir.display()
            ),
        ));
    }

    // 6. The rollout counted the device's attempt in wave 1; wave 2 still waits.
    println!(
        "\n$ ferry rollout show {rollout_id} --data {}",
        data.path.display()
    );
    let view = data.db.rollout_view(rollout_id).await?;
    rollout_cmds::print_view(&view);
    let counted = view.wave_counts.first().map(|w| (w.attempts, w.failures));
    let second_open = view.wave_counts.get(1).is_some_and(|w| w.open);
    if counted != Some((1, 0)) || second_open {
        return Err(Failure::new(
            "DEMO_FAILED",
            format!(
                "rollout {rollout_id} counts {counted:?} (attempts, failures) in its first wave and its second wave is {}",
                if second_open { "open" } else { "closed" }
            ),
            "this is a bug in ferry: report it with the demo directory",
        ));
    }

    if s.version == "2.0" && s.running_slot == ferry_boot::Slot::B {
        println!(
            "\n== demo passed: the device runs 2.0 from slot b (device: {})",
            device_dir.display()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(
            "DEMO_FAILED",
            format!(
                "the device runs {} from slot {} instead of 2.0 from slot b",
                s.version, s.running_slot
            ),
            format!(
                "inspect the device with `ferry status --device {}`",
                device_dir.display()
            ),
        ))
    }
}

/// Creates a two-wave rollout of 2.0 (`N%@0,100%@1h`) and explains it for the demo's one
/// device. A device's place is fixed by a hash of the rollout id and its id, so the demo
/// sizes the first wave to hold its device: the fresh database's first rollout is id 1.
async fn two_wave_rollout(data: &DataDir, device: &DeviceId) -> Result<i64, Failure> {
    let place = ferry_server::rollouts::place(1, device);
    let first = if place < 9900 {
        format!("{}%", place / 100 + 1)
    } else {
        "99.99%".to_owned()
    };
    let waves = format!("{first}@0,100%@1h");
    println!(
        "\n$ ferry rollout create --data {} --class {CLASS} --version 2.0 --waves {waves}",
        data.path.display()
    );
    println!(
        "(the device's place in rollout 1 is {place} of 10000: a first wave of {first} holds it, the rest of the class waits an hour)"
    );
    let rollout = data
        .db
        .create_rollout(&NewRollout {
            class: CLASS.into(),
            version: "2.0".into(),
            waves: Some(waves),
            ..NewRollout::default()
        })
        .await?;
    rollout_cmds::print_one(&rollout, false);
    if rollout.wave_of(device) != 0 {
        return Err(Failure::new(
            "DEMO_FAILED",
            format!(
                "the device fell in the second wave of rollout {} (place {place} of 10000)",
                rollout.id
            ),
            "run the demo again: a new device gets a new place (place 9999 cannot be in a first wave)",
        ));
    }
    println!(
        "\n$ ferry rollout explain {device} --data {}",
        data.path.display()
    );
    rollout_cmds::print_explanations(device, &data.db.explain(device).await?);
    Ok(rollout.id)
}

/// `--keep-serving`: says where the dashboard is and how to sign in, then waits for
/// Ctrl-C or SIGTERM while the server goes on serving.
async fn keep_serving(data: &DataDir, url: &str) {
    let token = data.path.join(ferry_server::pki::ADMIN_TOKEN_FILE);
    println!(
        "\n== dashboard: {url}/ (the demo's CA signs its certificate: accept it in the browser, or import {})",
        data.path.join("pki/ca.pem").display()
    );
    println!("== sign in with the admin token in {}", token.display());
    println!(
        "== or add a user: ferry server user add NAME --role operator --data {}",
        data.path.display()
    );
    println!("== serving until Ctrl-C");
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// The demo publishes its releases and creates rollout 1, so it needs a database and a store
/// of its own: an earlier demo's (or a real fleet's) releases, devices, rollouts or catalog
/// are refused, not mixed in or deleted. A fresh data directory's SQLite file and artifacts
/// directory are always empty.
async fn require_empty(data: &DataDir) -> Result<(), Failure> {
    let releases = data.db.releases(CLASS).await?.len();
    let devices = data.db.devices().await?.len();
    let rollouts = data.db.rollouts().await?.len();
    let catalog = data.store.is_shared()
        && data
            .store
            .exists(&ferry_server::catalog_store::key(
                ferry_server::tuf::METADATA_DIR,
                "timestamp.json",
            ))
            .await?;
    if releases > 0 || devices > 0 || rollouts > 0 || catalog {
        return Err(Failure::new(
            "DEMO_NOT_EMPTY",
            format!(
                "the demo's database or store is in use ({releases} {CLASS} release(s), {devices} device(s), {rollouts} rollout(s), {} catalog in {})",
                if catalog { "a" } else { "no" },
                data.store.name()
            ),
            "give the demo an empty PostgreSQL database (createdb) and an empty bucket or prefix",
        ));
    }
    Ok(())
}

fn parse_version(v: &str) -> Result<ferry_types::Version, Failure> {
    v.parse().map_err(|e: ferry_types::VersionError| {
        Failure::new("DEMO_FAILED", e.to_string(), "this is a bug in ferry")
    })
}

/// The demo directory must be new, empty, or an earlier demo's (which is cleared).
fn prepare_dir(dir: &Path) -> Result<(), Failure> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io_failure("read the demo directory", e))?
            .next()
            .is_none();
        if !empty {
            if !dir.join(MARKER).exists() {
                return Err(Failure::new(
                    "DEMO_DIR_IN_USE",
                    format!(
                        "{} is not empty and was not made by ferry demo",
                        dir.display()
                    ),
                    "pass a new directory with --dir",
                ));
            }
            for sub in ["server", "device", "images"] {
                let p = dir.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p)
                        .map_err(|e| io_failure("clear the previous demo", e))?;
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io_failure("create the demo directory", e))?;
    std::fs::write(dir.join(MARKER), b"made by ferry demo\n")
        .map_err(|e| io_failure("mark the demo directory", e))?;
    Ok(())
}
