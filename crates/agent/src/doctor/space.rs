//! The space check: the sizing of the offered update ([`crate::install::sizing`]) per
//! filesystem, needed against free and purgeable, as the install would measure it before
//! its download; with nothing offered, the reserve the boot-critical writes need.

use ferry_boot::Slot;
use serde_json::json;

use crate::AgentError;
use crate::device::{SlotInfo, read_json};
use crate::doctor::check::Check;
use crate::doctor::subject::Subject;
use crate::facts::RESERVE_BYTES;
use crate::install::purge::{self, Keep};
use crate::install::record::InstallProgress;
use crate::install::sizing::{self, Need, Sizing};
use crate::offer::Offer;

/// Name of the check.
pub const SPACE: &str = "space";

/// Sizes the offer (or the reserve alone) on the device now.
pub fn check(
    subject: &Subject,
    offer: Option<&Offer>,
    running: Option<&(Slot, SlotInfo)>,
) -> Check {
    let Some(config) = subject.config() else {
        return Check::skipped(SPACE, "config.toml cannot be read (see the config check)");
    };
    let layout = subject.layout();
    let record: Option<InstallProgress> = read_json(&layout.install_record()).ok();
    let keep = Keep::for_record(record.as_ref());
    let sized = match (offer, running) {
        (Some(offer), Some((running, _))) => {
            if offer.image_size > config.slots.capacity {
                let e = AgentError::SlotTooSmall {
                    slot: (!*running).to_string(),
                    needed: offer.image_size,
                    capacity: config.slots.capacity,
                };
                return Check::fail(SPACE, &e, json!({ "offer": offer.label }));
            }
            let Some(slot_path) = subject.slot_path(!*running) else {
                return Check::skipped(SPACE, "the slots cannot be found (see the config check)");
            };
            sizing::assess(
                &layout,
                &sizing::Update {
                    slot_path: &slot_path,
                    image_size: offer.image_size,
                    payload_size: offer.release.payload.size,
                    manifest_len: offer.release.manifest.size,
                },
                keep,
            )
        }
        _ => {
            let needs = vec![
                Need {
                    what: "reserve",
                    path: layout.dir().to_owned(),
                    bytes: RESERVE_BYTES,
                },
                Need {
                    what: "cache",
                    path: layout.cache_dir(),
                    bytes: 0,
                },
            ];
            sizing::measure(needs, &purge::purgeable(&layout, keep)).map(|filesystems| Sizing {
                filesystems,
                purged: purge::Purged::default(),
                preallocated: None,
            })
        }
    };
    let sizing = match sized {
        Ok(sizing) => sizing,
        Err(e) => return Check::fail(SPACE, &e, json!(null)),
    };
    let evidence = json!({
        "offer": offer.map(|o| &o.label),
        "filesystems": sizing.filesystems,
    });
    if !sizing.fits() {
        let fixable = sizing
            .filesystems
            .iter()
            .filter(|fs| fs.short())
            .all(|fs| fs.purgeable >= fs.needed - fs.free);
        let check = Check::fail(SPACE, &sizing.error(), evidence);
        return if fixable { check.fixable() } else { check };
    }
    let each: Vec<String> = sizing
        .filesystems
        .iter()
        .map(|fs| {
            format!(
                "{} needs {} MiB of {} MiB free",
                fs.path.display(),
                fs.needed.div_ceil(1 << 20),
                fs.free >> 20
            )
        })
        .collect();
    let what = offer.map_or("the reserve fits".to_owned(), |o| {
        format!("{} fits", o.label)
    });
    Check::ok(SPACE, format!("{what}: {}", each.join("; ")), evidence)
}
