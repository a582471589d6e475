//! `ferry server personalization-key list|rotate|retire`: the key set devices trust,
//! changed only by signing a new one into the catalog (a running server picks the new
//! current key up within a second). With `--store` the catalog is taken from the replicas'
//! shared store first and given back after, as `ferry publish` does.

use std::process::ExitCode;

use ferry_personalize::{KeyId, KeySet};
use ferry_server::tuf::CatalogPaths;
use ferry_server::{DataDir, ServerError, catalog_store, key_share, keyset};

use crate::args::{KeyAction, KeySetArgs, PersonalizationKeyArgs};
use crate::failure::Failure;

/// The catalog `set` names (`command` needs `--data`), pulled from the replicas' store
/// first when there is one; `ferry server init` must have made it. Also gives back the
/// store's data directory, to push the change to.
async fn open_catalog(
    command: &str,
    set: &KeySetArgs,
) -> Result<(Option<DataDir>, CatalogPaths), Failure> {
    let json = set.json;
    let data = set.data.as_deref().ok_or_else(|| {
        Failure::new(
            "USAGE",
            format!("ferry server {command} needs --data DIR"),
            "pass the server's data directory with --data",
        )
        .json(json)
    })?;
    let shared = pull(data, set.database.as_deref(), set.store.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let paths = CatalogPaths::new(data, set.keys.as_deref());
    ferry_server::tuf::require_initialised(&paths).map_err(|e| Failure::from(e).json(json))?;
    Ok((shared, paths))
}

/// Runs one `personalization-key` action and prints the key set it leaves.
pub async fn run(a: PersonalizationKeyArgs) -> Result<ExitCode, Failure> {
    let json = a.set.json;
    let (shared, paths) = open_catalog("personalization-key", &a.set).await?;
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
        KeyAction::Rotate => (
            signed(shared.as_ref(), keyset::KEYS_SUBDIR, keyset::rotate(&paths))
                .await
                .map_err(fail)?,
            Some("rotated"),
        ),
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
                signed(
                    shared.as_ref(),
                    keyset::KEYS_SUBDIR,
                    keyset::retire(&paths, key_id),
                )
                .await
                .map_err(fail)?,
                Some("retired"),
            )
        }
    };
    print_set(&set, changed, json);
    Ok(ExitCode::SUCCESS)
}

/// With a shared store: the data directory opened on it, its catalog brought up to the
/// store's (so the change is signed on top of the newest, not on a stale local copy).
async fn pull(
    data: &std::path::Path,
    database: Option<&str>,
    store: Option<&str>,
) -> Result<Option<DataDir>, ServerError> {
    let Some(store) = store else {
        return Ok(None);
    };
    let data = DataDir::open_with(data, database, Some(store)).await?;
    catalog_store::pull(&data).await?;
    Ok(Some(data))
}

/// Signs a key-set change (`sign`): with a shared store, on top of its newest catalog and
/// under its catalog lock ([`catalog_store::change`]), the set's current private key given
/// back sealed ([`key_share`]) before the catalog that names it, so every replica takes both.
async fn signed(
    shared: Option<&DataDir>,
    kind: &str,
    sign: impl std::future::Future<Output = Result<KeySet, ServerError>>,
) -> Result<KeySet, ServerError> {
    let Some(data) = shared else {
        return sign.await;
    };
    catalog_store::change(data, async {
        let set = sign.await?;
        key_share::share(data, kind, &set.current().to_string()).await?;
        Ok(set)
    })
    .await
}

/// Runs one `director-key` action and prints the director key set it leaves.
pub async fn run_director(a: crate::args::DirectorKeyArgs) -> Result<ExitCode, Failure> {
    let json = a.set.json;
    let (shared, paths) = open_catalog("director-key", &a.set).await?;
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
            signed(
                shared.as_ref(),
                ferry_server::director::KEYS_SUBDIR,
                ferry_server::director::rotate(&paths),
            )
            .await
            .map_err(fail)?,
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
