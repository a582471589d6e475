//! The trust checks: the pinned catalog root (TUF root metadata its own keys sign), the
//! pinned CA (a certificate, valid now) and the personalization key set taken from the
//! catalog (present and readable; `--fix` takes it again from the catalog).

use chrono::Utc;
use ferry_catalog::Catalog;
use ferry_personalize::{KEY_SET_TARGET, KeySet};
use ferry_types::Sha256;
use serde_json::json;

use crate::AgentError;
use crate::doctor::check::{Check, Finding};
use crate::doctor::subject::Subject;

/// Name of the pinned-root check.
pub const PINNED_ROOT: &str = "pinned_root";
/// Name of the pinned-CA check.
pub const PINNED_CA: &str = "pinned_ca";
/// Name of the key-set check.
pub const KEY_SET: &str = "key_set";

/// `tuf/root.json`.
pub fn pinned_root(subject: &Subject) -> Check {
    let path = subject.layout().pinned_root();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::fail(
                PINNED_ROOT,
                &AgentError::RootNotPinned { path },
                json!(null),
            );
        }
        Err(source) => {
            let e = AgentError::Io {
                op: "reading the pinned root",
                path,
                source,
            };
            return Check::fail(PINNED_ROOT, &e, json!(null));
        }
    };
    let evidence = json!({ "path": path, "bytes": bytes.len(), "sha256": Sha256::of(&bytes) });
    match ferry_catalog::check_root(&bytes) {
        Ok(root) => Check::ok(
            PINNED_ROOT,
            format!(
                "version {}, signed by its own root keys ({} keys listed), expires {}",
                root.version,
                root.n_keys,
                root.expires.format("%Y-%m-%d")
            ),
            evidence,
        ),
        Err(e) => Check::fail(PINNED_ROOT, &e, evidence),
    }
}

/// The CA `config.toml` pins.
pub fn pinned_ca(subject: &Subject) -> Check {
    let Some(config) = subject.config() else {
        return Check::skipped(
            PINNED_CA,
            "config.toml cannot be read (see the config check)",
        );
    };
    let Some(stored) = &config.ca else {
        return Check::skipped(
            PINNED_CA,
            "no CA is pinned: the device trusts the system's roots",
        );
    };
    let path = subject.layout().resolve(stored);
    let pem = match std::fs::read_to_string(&path) {
        Ok(pem) => pem,
        Err(source) => {
            let e = AgentError::Io {
                op: "reading the pinned CA",
                path,
                source,
            };
            return Check::fail(PINNED_CA, &e, json!(null));
        }
    };
    let ca = match ferry_tls::describe_ca(&pem) {
        Ok(ca) => ca,
        Err(e) => return Check::fail(PINNED_CA, &e, json!({ "path": path })),
    };
    let now = subject.config().map_or_else(Utc::now, |c| {
        Utc::now() + chrono::Duration::seconds(crate::trust::personalize::clock_offset(c))
    });
    let evidence = json!({
        "path": path,
        "subject": ca.subject,
        "not_before": ca.not_before,
        "not_after": ca.not_after,
        "sha256": ca.sha256,
    });
    if now < ca.not_before || now > ca.not_after {
        let finding = Finding::CaNotValid {
            subject: ca.subject,
            not_before: ca.not_before,
            not_after: ca.not_after,
            now,
        };
        return Check::fail(PINNED_CA, &finding, evidence);
    }
    Check::ok(
        PINNED_CA,
        format!(
            "{}, valid until {}",
            ca.subject,
            ca.not_after.format("%Y-%m-%d")
        ),
        evidence,
    )
}

/// `trust/personalization-keys.json`, compared with the catalog's when it was fetched.
pub fn key_set(subject: &Subject, catalog: Option<&Catalog>) -> Check {
    let path = subject.layout().key_set();
    let offered = catalog.and_then(|c| c.target(KEY_SET_TARGET));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let evidence = json!({ "catalog_lists_one": offered.is_some() });
            let e = AgentError::KeySetMissing { path };
            return match (catalog, offered) {
                // Before the first scan: the scan every install starts with takes it.
                (_, Some(_)) => Check::ok(
                    KEY_SET,
                    "none taken yet: the next scan takes the one the catalog lists",
                    evidence,
                ),
                (Some(_), None) => Check::fail(KEY_SET, &e, evidence),
                (None, None) => Check::warn(KEY_SET, &e, evidence).fixable(),
            };
        }
        Err(source) => {
            let e = AgentError::Io {
                op: "reading the personalization key set",
                path,
                source,
            };
            return Check::fail(KEY_SET, &e, json!(null));
        }
    };
    let set = match KeySet::from_bytes(&bytes) {
        Ok(set) => set,
        Err(e) => {
            let e = AgentError::DeviceCorrupt {
                path,
                reason: e.to_string(),
            };
            return Check::fail(KEY_SET, &e, json!(null)).fixable();
        }
    };
    let digest = Sha256::of(&bytes);
    let same_as_catalog = offered.as_ref().map(|t| t.sha256 == digest);
    let evidence = json!({
        "version": set.version(),
        "current": set.current().to_string(),
        "keys": set.keys().len(),
        "sha256": digest,
        "same_as_catalog": same_as_catalog,
    });
    let note = match same_as_catalog {
        Some(true) => "the catalog's",
        Some(false) => "the catalog now lists another (the next scan takes it)",
        None => "not compared with the catalog",
    };
    let check = Check::ok(
        KEY_SET,
        format!(
            "version {}, {} key(s), current {}: {note}",
            set.version(),
            set.keys().len(),
            set.current()
        ),
        evidence,
    );
    if same_as_catalog == Some(false) {
        check.fixable()
    } else {
        check
    }
}
