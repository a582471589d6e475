//! `ferry device init`: a device directory made, its root pinned and the device enrolled
//! (`ferry_agent::provision`).

use std::io::Read as _;
use std::process::ExitCode;

use ferry_agent::device::Device;
use ferry_agent::provision::{self, InitOptions};

use crate::args::{BootKind, DeviceInitArgs};
use crate::failure::Failure;

/// The largest root metadata `--trust-on-first-use` accepts.
const MAX_ROOT_SIZE: u64 = 512 * 1024;

/// The enrollment token from `--enroll-token` (or `FERRY_ENROLL_TOKEN`), or read from
/// `--enroll-token-file` (`-`: standard input), trimmed.
fn enroll_token(a: &DeviceInitArgs) -> Result<String, Failure> {
    let unreadable = |what: &str, e: std::io::Error| {
        Failure::new(
            "ENROLL_TOKEN_UNREADABLE",
            format!("the enrollment token could not be read from {what}: {e}"),
            "pass a file holding the token from `ferry server token` with --enroll-token-file (or - and the token on standard input)",
        )
    };
    let text = match (&a.enroll_token, &a.enroll_token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().take(4096), &mut text)
                .map_err(|e| unreadable("standard input", e))?;
            text
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).map_err(|e| unreadable(&path.display().to_string(), e))?
        }
        (None, None) => String::new(),
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::new(
            "ENROLL_TOKEN_MISSING",
            "no enrollment token was given",
            "pass the token from `ferry server token --data DIR` with --enroll-token-file FILE (or -), --enroll-token or FERRY_ENROLL_TOKEN",
        ));
    }
    Ok(token.to_owned())
}

pub async fn device_init(a: DeviceInitArgs) -> Result<ExitCode, Failure> {
    let token = enroll_token(&a)?;
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
        Ok(device) => ferry_agent::trust::personalize::enroll(&device, &token).await,
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
