//! `ferry server`: run the HTTPS server, and its data-directory subcommands (`init`,
//! `token`, `devices`, `signing-window`; `personalization-key` is in `key_cmds`, `fleet`
//! and `events` in `fleet_cmds`).

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_server::devices::TokenScope;
use ferry_server::tuf::{CatalogPaths, KeyCustody};
use ferry_server::{DataDir, Https, ServiceOptions};

use crate::args::{
    ServerArgs, ServerCommand, ServerDevicesArgs, ServerInitArgs, ServerTokenArgs,
    SigningWindowArgs, WindowAction,
};
use crate::failure::Failure;

pub async fn server(a: ServerArgs) -> Result<ExitCode, Failure> {
    match a.command {
        Some(ServerCommand::Init(init)) => return server_init(init).await,
        Some(ServerCommand::Token(t)) => return server_token(t).await,
        Some(ServerCommand::Devices(d)) => return server_devices(d).await,
        Some(ServerCommand::SigningWindow(w)) => return signing_window(w).await,
        Some(ServerCommand::PersonalizationKey(k)) => return crate::key_cmds::run(k).await,
        Some(ServerCommand::DirectorKey(k)) => return crate::key_cmds::run_director(k).await,
        Some(ServerCommand::Fleet(f)) => return crate::fleet_cmds::fleet(f).await,
        Some(ServerCommand::Events(e)) => return crate::fleet_cmds::events(e).await,
        Some(ServerCommand::User(u)) => return crate::user_cmds::run(u).await,
        None => {}
    }
    let data_path = required_data("server", a.data, false)?;
    // Every connection costs a descriptor or two: use what the hard limit allows.
    ferry_server::serve::raise_descriptor_limit();
    let data = DataDir::open_with(&data_path, a.database.as_deref(), a.store.as_deref()).await?;
    let listener = tokio::net::TcpListener::bind(a.listen).await.map_err(|e| {
        Failure::new(
            "LISTEN_FAILED",
            format!("the server could not listen on {}: {e}", a.listen),
            "choose a free address with --listen, or stop what uses it",
        )
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new("LISTEN_FAILED", e.to_string(), "try again"))?;
    let options = ServiceOptions {
        policy: ferry_personalize::Policy {
            clock_skew_limit: std::time::Duration::from_secs(a.clock_skew_limit),
            ..ferry_personalize::Policy::default()
        },
        rate_limit_per_minute: a.rate_limit,
        silent_after: std::time::Duration::from_secs(a.silent_after),
    };
    let custody = if a.dev_keys {
        KeyCustody::DevInDataDir
    } else {
        KeyCustody::Offline
    };
    // The catalog is checked, and the secrets (CA, certificate, keys, admin token) exist,
    // before the address is printed.
    let https = Https::prepare(data, Some(addr), options, custody)
        .await?
        .with_limits(a.limits.limits())
        .with_lease_ttl(std::time::Duration::from_secs(a.lease_ttl));
    // The first line on stdout is the address, for scripts and tests that pass port 0.
    println!("ferry server listening on https://{addr}");
    https.serve(listener).await?;
    Ok(ExitCode::SUCCESS)
}

/// The `--data` directory `ferry COMMAND` needs: `USAGE` when it is missing.
pub(crate) fn required_data(
    command: &str,
    data: Option<PathBuf>,
    json: bool,
) -> Result<PathBuf, Failure> {
    data.ok_or_else(|| {
        Failure::new(
            "USAGE",
            format!("ferry {command} needs --data DIR"),
            "pass the server's data directory with --data",
        )
        .json(json)
    })
}

/// The server database of `--data` (or `--database`), for a command that reads and writes
/// it directly, whether or not the server runs.
pub(crate) async fn open_database(
    command: &str,
    data: Option<PathBuf>,
    database: Option<&str>,
    json: bool,
) -> Result<ferry_server::db::Db, Failure> {
    let path = required_data(command, data, json)?;
    DataDir::open_database(&path, database)
        .await
        .map_err(|e| Failure::from(e).json(json))
}

async fn server_token(a: ServerTokenArgs) -> Result<ExitCode, Failure> {
    let json = a.server.json;
    let db = DataDir::open_database(&a.server.data, a.server.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let scope = TokenScope {
        device_id: a.device,
        device_class: a.class,
        reenroll: a.reenroll,
        tags: ferry_server::rollouts::entitle::DeviceTags {
            tenant: a.tenant,
            region: a.region,
            tags: a
                .tags
                .map(|t| t.split(',').map(|s| s.trim().to_owned()).collect()),
        },
    };
    let token = db
        .create_enrollment_token(&scope)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!("{}", serde_json::json!({ "token": token.as_str() }));
    } else {
        println!("{}", token.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

async fn server_devices(a: ServerDevicesArgs) -> Result<ExitCode, Failure> {
    let json = a.server.json;
    let db = DataDir::open_database(&a.server.data, a.server.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if let Some(id) = &a.revoke {
        let device_id: ferry_types::DeviceId = id.parse().map_err(|_| {
            Failure::new(
                "INVALID_ARGUMENT",
                format!("{id:?} is not a device id"),
                "use the 16 hex digits `ferry server devices` lists",
            )
            .json(json)
        })?;
        let found = db
            .revoke(&device_id)
            .await
            .map_err(|e| Failure::from(e).json(json))?;
        if !found {
            return Err(Failure::new(
                "UNKNOWN_DEVICE",
                format!("device {device_id} is not enrolled"),
                "list the enrolled devices with `ferry server devices --data DIR`",
            )
            .json(json));
        }
        if json {
            println!("{}", serde_json::json!({ "revoked": device_id }));
        } else {
            println!("revoked device {device_id}: it gets no more tickets");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let devices = db
        .devices()
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&devices).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<18} {:<16} {:<22} Revoked",
        "Device", "Class", "Enrolled"
    );
    for d in &devices {
        println!(
            "{:<18} {:<16} {:<22} {}",
            d.device_id,
            d.device_class,
            d.enrolled_at,
            d.revoked_at.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn signing_window(a: SigningWindowArgs) -> Result<ExitCode, Failure> {
    let json = a.server.json;
    let db = DataDir::open_database(&a.server.data, a.server.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let open = matches!(a.action, WindowAction::Open);
    db.set_signing_window(&a.class, &a.build, open)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "class": a.class, "build_id": a.build, "open": open })
        );
    } else {
        println!(
            "signing window of build {} for class {}: {}",
            a.build,
            a.class,
            if open { "open" } else { "closed" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn server_init(a: ServerInitArgs) -> Result<ExitCode, Failure> {
    let data = DataDir::open_with(&a.data, a.database.as_deref(), None).await?;
    let paths = CatalogPaths::new(&data.path, a.keys.as_deref());
    if !a.dev_keys && ferry_server::tuf::is_inside(&paths.offline_keys, &data.path) {
        return Err(Failure::new(
            "OFFLINE_KEYS_ON_SERVER",
            format!(
                "{} is inside the server's data directory {}",
                paths.offline_keys.display(),
                data.path.display()
            ),
            "pass --keys a directory outside DATA, on a machine or medium the server cannot reach (or --dev-keys for a development catalog)",
        ));
    }
    if paths.is_initialised() {
        return Err(Failure::new(
            "CATALOG_EXISTS",
            format!("{} already holds a catalog", paths.metadata.display()),
            "keep it: devices pin its root; to start over, use a new data directory",
        ));
    }
    ferry_server::tuf::init(&paths).await?;
    println!("catalog created in {}", paths.metadata.display());
    println!(
        "  offline keys (root, targets): {}  <- keep offline; `ferry publish --keys` needs them",
        paths.offline_keys.display()
    );
    println!(
        "  online keys (snapshot, timestamp): {}",
        paths.online_keys.display()
    );
    println!(
        "  root to pin on devices: {}",
        paths.latest_root()?.display()
    );
    Ok(ExitCode::SUCCESS)
}
