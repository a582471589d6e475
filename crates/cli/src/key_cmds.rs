//! `ferry server personalization-key list|rotate|retire`: the key set devices trust,
//! changed only by signing a new one into the catalog (a running server picks the new
//! current key up within a second).

use std::process::ExitCode;

use ferry_personalize::{KeyId, KeySet};
use ferry_server::keyset;
use ferry_server::tuf::CatalogPaths;

use crate::args::{KeyAction, PersonalizationKeyArgs};
use crate::failure::Failure;

/// The catalog of the data directory `--data` names (`command` needs it), which `ferry
/// server init` must have made.
fn initialised_catalog(
    command: &str,
    data: Option<std::path::PathBuf>,
    keys: Option<&std::path::Path>,
    json: bool,
) -> Result<CatalogPaths, Failure> {
    let data = data.ok_or_else(|| {
        Failure::new(
            "USAGE",
            format!("ferry server {command} needs --data DIR"),
            "pass the server's data directory with --data",
        )
        .json(json)
    })?;
    let paths = CatalogPaths::new(&data, keys);
    ferry_server::tuf::require_initialised(&paths).map_err(|e| Failure::from(e).json(json))?;
    Ok(paths)
}

/// Runs one `personalization-key` action and prints the key set it leaves.
pub async fn run(a: PersonalizationKeyArgs) -> Result<ExitCode, Failure> {
    let json = a.json;
    let paths = initialised_catalog("personalization-key", a.data, a.keys.as_deref(), json)?;
    let fail = |e: ferry_server::ServerError| Failure::from(e).json(json);
    let (set, changed) = match a.action {
        KeyAction::List => {
            let set = keyset::published(&paths).map_err(fail)?.ok_or_else(|| {
                Failure::new(
                    "KEYSET_MISSING",
                    "the catalog lists no personalization key set",
                    "start the server once, or run `ferry server personalization-key rotate`",
                )
                .json(json)
            })?;
            (set, None)
        }
        KeyAction::Rotate => (keyset::rotate(&paths).await.map_err(fail)?, Some("rotated")),
        KeyAction::Retire { key_id } => {
            let key_id: KeyId = key_id.parse().map_err(|_| {
                Failure::new(
                    "INVALID_ARGUMENT",
                    format!("{key_id:?} is not a key id"),
                    "use the 64 hex digits `ferry server personalization-key list` shows",
                )
                .json(json)
            })?;
            (
                keyset::retire(&paths, key_id).await.map_err(fail)?,
                Some("retired"),
            )
        }
    };
    print_set(&set, changed, json);
    Ok(ExitCode::SUCCESS)
}

/// Runs one `director-key` action and prints the director key set it leaves.
pub async fn run_director(a: crate::args::DirectorKeyArgs) -> Result<ExitCode, Failure> {
    let json = a.json;
    let paths = initialised_catalog("director-key", a.data, a.keys.as_deref(), json)?;
    let fail = |e: ferry_server::ServerError| Failure::from(e).json(json);
    let (set, changed) = match a.action {
        crate::args::DirectorKeyAction::List => {
            let set = ferry_server::director::published(&paths)
                .map_err(fail)?
                .ok_or_else(|| {
                    Failure::new(
                        "KEYSET_MISSING",
                        "the catalog lists no director key set",
                        "run `ferry server director-key rotate` to publish one",
                    )
                    .json(json)
                })?;
            (set, None)
        }
        crate::args::DirectorKeyAction::Rotate => (
            ferry_server::director::rotate(&paths).await.map_err(fail)?,
            Some("rotated"),
        ),
    };
    if json {
        print_set_json(&set, changed);
    } else {
        if let Some(changed) = changed {
            println!(
                "{changed}: director key set version {} signed into the catalog; devices refuse decisions by the old key after their next scan",
                set.version()
            );
        }
        println!(
            "director key set version {}: {} (signs decisions)",
            set.version(),
            set.current()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A key set under `--json`: its version, current key, every key and what changed.
fn print_set_json(set: &KeySet, changed: Option<&str>) {
    let value = serde_json::json!({
        "version": set.version(),
        "current": set.current(),
        "keys": set.key_ids(),
        "changed": changed,
    });
    println!("{value}");
}

fn print_set(set: &KeySet, changed: Option<&str>, json: bool) {
    if json {
        print_set_json(set, changed);
        return;
    }
    if let Some(changed) = changed {
        println!(
            "{changed}: key set version {} signed into the catalog; devices take it at their next scan",
            set.version()
        );
    }
    println!("personalization key set version {}", set.version());
    for key_id in set.key_ids() {
        let role = if key_id == set.current() {
            "current (signs tickets)"
        } else {
            "accepted"
        };
        println!("  {key_id}  {role}");
    }
}
