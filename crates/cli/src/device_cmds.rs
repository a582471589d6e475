//! The device-side subcommands: `device init`, `audience set`, `list`, `install`,
//! `status`, `history`, `reboot`, `doctor`, `purge-cache` and `boot-check`.

use std::process::ExitCode;

use ferry_agent::boot::reboot as agent_reboot;
use ferry_agent::device::Device;
use ferry_agent::provision::{self, InitOptions};
use ferry_agent::trust::catalog;
use ferry_agent::{install, status as agent_status};

use crate::args::{
    AudienceSetArgs, BootKind, DeviceArgs, DeviceInitArgs, DoctorArgs, InstallArgs, PurgeCacheArgs,
    RebootArgs,
};
use crate::failure::Failure;
use crate::render::{self, ProgressUi};

/// The largest root metadata `--trust-on-first-use` accepts.
const MAX_ROOT_SIZE: u64 = 512 * 1024;

pub async fn device_init(a: DeviceInitArgs) -> Result<ExitCode, Failure> {
    let root = match &a.root {
        Some(path) => std::fs::read(path).map_err(|e| {
            Failure::new(
                "ROOT_UNREADABLE",
                format!("the root file {} could not be read: {e}", path.display()),
                "pass the server's DATA/tuf/metadata/N.root.json with --root",
            )
        })?,
        None => {
            // --trust-on-first-use (clap requires one of the two).
            // The root is trusted on first use; the connection is still pinned to the CA.
            let ca_pem = std::fs::read_to_string(&a.ca).map_err(|e| {
                Failure::new(
                    "CA_UNREADABLE",
                    format!("the CA file {} could not be read: {e}", a.ca.display()),
                    "pass the server's DATA/pki/ca.pem with --ca",
                )
            })?;
            let client = ferry_agent::client::Client::pinned(
                &a.server,
                Some(&ca_pem),
                ferry_agent::device::DEFAULT_READ_TIMEOUT,
            )?;
            let path = format!("{}1.root.json", ferry_agent::client::METADATA_PATH);
            let root = client.small_file(&path, MAX_ROOT_SIZE).await?;
            tracing::warn!(
                server = %a.server,
                "trusting the catalog root the server sent (--trust-on-first-use)"
            );
            root.to_vec()
        }
    };
    let fresh = !a.dir.exists();
    let identity = provision::init(
        &a.dir,
        &InitOptions {
            class: a.class,
            image: a.image,
            version: a.version.clone(),
            server: a.server.clone(),
            audience: a.audience,
            slot_size: a.slot_size,
            boot: match a.boot {
                BootKind::File => ferry_boot::BootBackend::File,
                BootKind::Grub => ferry_boot::BootBackend::Grub {
                    path: "grubenv".into(),
                },
                BootKind::Uboot => ferry_boot::BootBackend::Uboot {
                    config: "fw_env.config".into(),
                },
            },
            health_checks: a.health_checks,
            root,
            ca: Some(a.ca.clone()),
        },
    )?;
    // Enroll: the credential and the personalization key, over the pinned CA. A device
    // that could not enroll is removed again, so init can simply be run again.
    let enrolled = match Device::open(&a.dir) {
        Ok(device) => ferry_agent::trust::personalize::enroll(&device, &a.enroll_token).await,
        Err(e) => Err(e),
    };
    if let Err(e) = enrolled {
        if fresh {
            let _ = std::fs::remove_dir_all(&a.dir);
        } else if let Ok(entries) = std::fs::read_dir(&a.dir) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path())
                    .or_else(|_| std::fs::remove_file(entry.path()));
            }
        }
        return Err(e.into());
    }
    println!(
        "device {} ({}) at {} runs {} on slot a, enrolled with {}",
        identity.device_id,
        identity.device_class,
        a.dir.display(),
        a.version,
        a.server
    );
    Ok(ExitCode::SUCCESS)
}

fn open(a: &DeviceArgs) -> Result<Device, Failure> {
    Device::open(&a.device).map_err(|e| Failure::from(e).json(a.json))
}

pub async fn list(a: DeviceArgs, full: bool) -> Result<ExitCode, Failure> {
    let device = open(&a)?;
    let offers = if full {
        install::list_full(&device).await
    } else {
        install::list(&device).await
    }
    .map_err(|e| Failure::from(e).json(a.json))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&offers).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if offers.is_empty() {
        println!("No new software available.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Software Update found the following {}:",
        if full {
            "full installers"
        } else {
            "new or updated software"
        }
    );
    for o in &offers {
        println!("* Label: {}", o.label);
        println!(
            "\tTitle: {}, Version: {}, Size: {}, Recommended: {}, Action: {}",
            o.title,
            o.version,
            render::bytes(o.download_size),
            if o.recommended { "YES" } else { "NO" },
            o.action
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn install(a: InstallArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let device = open(&a.device)?;
    let ui = ProgressUi::new(a.verbose);
    let label = if a.all { None } else { a.label.as_deref() };
    let result = install::install(&device, label, &ui).await;
    ui.finish();
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            // The checks that can explain it, run now: the cause, not only the error.
            let diagnosis = ferry_agent::doctor::after_failure(&device, &e).await;
            return Err(crate::failure::agent_failure(e)
                .json(json)
                .diagnosed(diagnosis));
        }
    };
    for w in outcome.iter().flat_map(|o| &o.warnings) {
        eprintln!("warning[{}]: {}\n  fix: {}", w.code, w.cause, w.fix);
    }
    let Some(outcome) = outcome else {
        if json {
            println!("{}", serde_json::json!({ "installed": null }));
        } else {
            println!("No new software available.");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        println!("{}", serde_json::json!({ "installed": outcome }));
    } else {
        let secs = outcome.download_secs.max(1e-9);
        println!(
            "Installed {} into slot {} (update {}) from the {} payload: {} downloaded{}{} in {:.1}s ({}/s of image), verified in {:.1}s.",
            outcome.version,
            outcome.slot,
            outcome.update_id,
            outcome.payload_kind,
            render::bytes(outcome.bytes_downloaded),
            if outcome.bytes_reused > 0 {
                format!(
                    ", {} reused from the running slot",
                    render::bytes(outcome.bytes_reused)
                )
            } else {
                String::new()
            },
            if outcome.resumed_from_batch > 0 {
                format!(" (resumed at batch {})", outcome.resumed_from_batch)
            } else if outcome.resumed_from_frame > 0 {
                format!(" (resumed at frame {})", outcome.resumed_from_frame)
            } else {
                String::new()
            },
            outcome.download_secs,
            render::bytes((outcome.image_size as f64 / secs) as u64),
            outcome.verify_secs,
        );
        if !a.restart {
            println!(
                "Restart to use it: ferry reboot --device {}",
                a.device.device.display()
            );
        }
    }
    if a.restart {
        print_reboot(
            &agent_reboot::reboot(&device, false).map_err(|e| Failure::from(e).json(json))?,
            json,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_reboot(outcome: &agent_reboot::RebootOutcome, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(outcome).unwrap_or_default()
        );
        return;
    }
    match (&outcome.tried, &outcome.failure) {
        (Some(slot), None) => println!(
            "Restarted into slot {slot}: now running {}.",
            outcome.version
        ),
        (Some(slot), Some(f)) if f.code == "BOOT_CRASHED" => {
            println!(
                "Restarted into slot {slot}, which crashed before its boot check: {} [{}]",
                f.cause, f.code
            );
        }
        (Some(slot), Some(f)) => {
            println!(
                "Restarted, but slot {slot} failed its check and was abandoned: {} [{}]",
                f.cause, f.code
            );
            println!(
                "Fell back to slot {}: still running {}.",
                outcome.running, outcome.version
            );
        }
        (None, _) => println!(
            "Restarted slot {}: running {}.",
            outcome.running, outcome.version
        ),
    }
}

pub fn reboot(r: RebootArgs) -> Result<ExitCode, Failure> {
    let a = r.device;
    let device = open(&a)?;
    let outcome = agent_reboot::reboot(&device, r.simulate_crash)
        .map_err(|e| Failure::from(e).json(a.json))?;
    print_reboot(&outcome, a.json);
    // A fall-back is a failure; a crash the caller asked to simulate is not.
    let fell_back = outcome
        .failure
        .as_ref()
        .is_some_and(|f| f.code != "BOOT_CRASHED");
    Ok(if fell_back {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn boot_check(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let device = open(&a)?;
    let running = device
        .running_slot()
        .map_err(|e| Failure::from(e).json(a.json))?;
    agent_reboot::boot_check(&device, running).map_err(|e| Failure::from(e).json(a.json))?;
    if a.json {
        println!("{}", serde_json::json!({ "slot": running, "ok": true }));
    } else {
        println!("slot {running} verified");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn audience_set(a: AudienceSetArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let mut device = open(&a.device)?;
    let previous = device.config.audience.clone();
    device
        .set_audience(&a.audience)
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "audience": a.audience, "previous": previous })
        );
    } else {
        println!("audience: {previous} -> {}", a.audience);
    }
    Ok(ExitCode::SUCCESS)
}

/// `status --json`: the agent's status plus the last scan.
#[derive(serde::Serialize)]
struct StatusView<'a> {
    #[serde(flatten)]
    status: &'a agent_status::Status,
    last_scan: Option<catalog::LastScan>,
}

pub fn status(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let device = open(&a)?;
    let s = agent_status::status(&device).map_err(|e| Failure::from(e).json(a.json))?;
    let last_scan = catalog::last_scan(&device.dir);
    if a.json {
        let view = StatusView {
            status: &s,
            last_scan,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "device {} ({}), audience {}, server {}",
        s.identity.device_id, s.identity.device_class, s.audience, s.server
    );
    println!(
        "running {} on slot {}; next boot: slot {}",
        s.version, s.running_slot, s.next_boot
    );
    for slot in &s.slots {
        let content = slot.content.as_ref().map_or("empty".to_owned(), |c| {
            format!("{} ({})", c.version, c.build_id)
        });
        let mut flags = Vec::new();
        if slot.running {
            flags.push("running".to_owned());
        }
        if slot.good {
            flags.push("good".to_owned());
        }
        if let Some(t) = slot.tries_left {
            flags.push(format!("on trial, {t} tries left"));
        }
        println!("  slot {}: {content} [{}]", slot.slot, flags.join(", "));
    }
    if let Some(f) = &s.last_boot_failure {
        println!(
            "last boot failure: slot {} at {}: {} [{}]",
            f.slot, f.at, f.message, f.code
        );
    }
    match &last_scan {
        Some(scan) => println!(
            "last scan: {} ({}), {} offer{}",
            scan.at.format("%Y-%m-%d %H:%M:%S UTC"),
            scan.result,
            scan.n_offers,
            if scan.n_offers == 1 { "" } else { "s" }
        ),
        None => println!("last scan: never"),
    }
    if let Some(p) = &s.install_in_progress {
        println!(
            "install in progress: {} into slot {}, {} frames done (run install again to resume)",
            p.version, p.slot, p.frames_done
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn history(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let device = open(&a)?;
    let receipts = agent_status::history(&device).map_err(|e| Failure::from(e).json(a.json))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&receipts).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<10} {:<22} {:<5} {:<8} {:>12}",
        "Installed", "Version", "Build", "Slot", "Payload", "Downloaded"
    );
    for r in &receipts {
        println!(
            "{:<28} {:<10} {:<22} {:<5} {:<8} {:>12}",
            r.installed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            r.version.to_string(),
            r.build_id,
            r.slot.to_string(),
            r.payload_kind,
            render::bytes(r.bytes_downloaded)
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn doctor(d: DoctorArgs) -> Result<ExitCode, Failure> {
    use ferry_agent::doctor::{self, Scope, Subject};
    let a = d.device;
    if !ferry_agent::layout::Layout::new(&a.device)
        .identity()
        .is_file()
        && !ferry_agent::layout::Layout::new(&a.device)
            .config()
            .is_file()
    {
        let e = ferry_agent::AgentError::DeviceMissing {
            dir: a.device.clone(),
        };
        return Err(Failure::from(e).json(a.json));
    }
    let mut report = doctor::run(&Subject::open(&a.device), &Scope::All).await;
    if d.fix {
        let fixes = doctor::fix::fix(&a.device, &report).await;
        if fixes.iter().any(|f| f.done) {
            report = doctor::run(&Subject::open(&a.device), &Scope::All).await;
        }
        report.fixes = fixes;
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        render::doctor(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn purge_cache(a: PurgeCacheArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let device = open(&a.device)?;
    let purged =
        install::purge::purge_cache(&device, a.all).map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&purged).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for item in &purged.removed {
        println!(
            "removed {} ({}): {}",
            item.path.display(),
            render::bytes(item.bytes),
            item.why
        );
    }
    println!(
        "Freed {} ({} item{}).",
        render::bytes(purged.bytes),
        purged.removed.len(),
        if purged.removed.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
