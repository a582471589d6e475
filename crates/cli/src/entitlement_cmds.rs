//! `ferry entitlement grant|revoke|list|set-tags|tags`: entitlements and device tags read
//! and written in the data directory's database directly (like `ferry rollout`), so they
//! work whether or not the server runs; a running server applies each change at the next
//! scan (decision) and ticket request.

use std::process::ExitCode;

use ferry_server::fleet::time_of;
use ferry_server::rollouts::cohort::DeviceFacts;
use ferry_server::rollouts::entitle::{DeviceTags, Entitlement, NewEntitlement};

use crate::args::{EntitlementAction, EntitlementArgs};
use crate::failure::Failure;

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn when(ms: i64) -> String {
    time_of(ms).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn print_one(e: &Entitlement) {
    let state = e.revoked_ms.map_or_else(
        || "granted".to_owned(),
        |ms| format!("revoked {}", when(ms)),
    );
    println!(
        "entitlement {}: {} {} to {} ({state})",
        e.id, e.class, e.version, e.selector
    );
}

fn print_facts(f: &DeviceFacts) {
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let tags: Vec<&str> = f.tags.iter().map(String::as_str).collect();
    println!(
        "device {}: tenant {}, region {}, tags {}, audience {}",
        f.device_id.map(|d| d.to_string()).unwrap_or_default(),
        or_none(&f.tenant),
        or_none(&f.region),
        if tags.is_empty() {
            "-".to_owned()
        } else {
            tags.join(",")
        },
        or_none(&f.audience)
    );
}

pub async fn entitlement(a: EntitlementArgs) -> Result<ExitCode, Failure> {
    let json = a.json;
    let fail = |e: ferry_server::ServerError| Failure::from(e).json(json);
    let db = &crate::server_cmds::open_database("entitlement", a.data, a.database.as_deref(), json)
        .await?;
    match a.action {
        EntitlementAction::Grant { class, version, to } => {
            let e = db
                .grant_entitlement(&NewEntitlement { class, version, to })
                .await
                .map_err(fail)?;
            if json { print_json(&e) } else { print_one(&e) }
        }
        EntitlementAction::Revoke { id } => {
            let e = db.revoke_entitlement(id).await.map_err(fail)?;
            if json { print_json(&e) } else { print_one(&e) }
        }
        EntitlementAction::List => {
            let all = db.entitlements().await.map_err(fail)?;
            if json {
                print_json(&all);
            } else if all.is_empty() {
                println!("no entitlements: every device may get every release of its class");
            } else {
                all.iter().for_each(print_one);
            }
        }
        EntitlementAction::SetTags {
            device,
            tenant,
            region,
            tags,
        } => {
            let change = DeviceTags {
                tenant,
                region,
                tags: tags.map(|t| t.split(',').map(|s| s.trim().to_owned()).collect()),
            };
            db.set_device_tags(&device, &change).await.map_err(fail)?;
            let facts = db.cohort_facts(&device, true).await.map_err(fail)?;
            if json {
                print_json(&facts)
            } else {
                print_facts(&facts)
            }
        }
        EntitlementAction::Tags { device } => {
            let facts = db.cohort_facts(&device, true).await.map_err(fail)?;
            if json {
                print_json(&facts)
            } else {
                print_facts(&facts)
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
