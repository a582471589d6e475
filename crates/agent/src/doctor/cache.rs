//! The update-cache check: the install record, the spool and the chunk cache checked
//! against the payload's digests, so a partial or damaged download never passes for a
//! complete one; and what no install needs any more (stale downloads, temp files). It
//! also says what `--fix` removes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use ferry_payload::Manifest;
use ferry_types::Sha256;
use serde_json::json;

use crate::device::read_json;
use crate::doctor::check::{Check, Finding};
use crate::doctor::subject::Subject;
use crate::install::purge::{self, Keep, Purgeable};
use crate::install::record::InstallProgress;
use crate::offer::Offer;

/// Name of the check.
pub const CACHE: &str = "cache";

/// The check, and what `--fix` would remove.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The check.
    pub check: Check,
    /// What `--fix` removes: corrupt or stale items.
    pub remove: Vec<Purgeable>,
}

/// Inspects the cache; `manifest` is the offer's (fetched and checked against the
/// catalog), when there is one.
pub fn inspect(
    subject: &Subject,
    offer: Option<&Offer>,
    manifest: Option<&Manifest>,
) -> Inspection {
    if subject.busy() {
        return Inspection {
            check: Check::skipped(CACHE, "another process is using the device and its cache"),
            remove: Vec::new(),
        };
    }
    let layout = subject.layout();
    let record_path = layout.install_record();
    let everything = || purge::purgeable(&layout, Keep::NOTHING);
    let record: Option<InstallProgress> = if record_path.exists() {
        match read_json(&record_path) {
            Ok(record) => Some(record),
            Err(e) => {
                let finding = Finding::CacheCorrupt {
                    what: "the install record".into(),
                    path: record_path.clone(),
                    reason: e.to_string(),
                };
                return corrupt(finding, everything());
            }
        }
    } else {
        None
    };
    let superseded = match (&record, offer) {
        (Some(record), Some(offer)) => record.manifest_sha256 != offer.release.manifest.sha256,
        _ => false,
    };
    let mut notes = Vec::new();
    if let (Some(record), Some(manifest), false) = (&record, manifest, superseded) {
        // Every frame the record says is in the slot must be there.
        if let Some(slot) = subject.slot_path(record.slot) {
            match verify_frames(&slot, manifest, record.frames_done) {
                Ok(()) => notes.push(format!(
                    "{} of {} frames of {} in slot {} match their digests",
                    record.frames_done,
                    manifest.frames.len(),
                    record.version,
                    record.slot
                )),
                Err(reason) => {
                    let finding = Finding::CacheCorrupt {
                        what: "the install record".into(),
                        path: record_path.clone(),
                        reason: format!(
                            "says {} frames of {} are in slot {}, but {reason}",
                            record.frames_done, record.version, record.slot
                        ),
                    };
                    return corrupt(finding, everything());
                }
            }
        }
        match crate::install::spool::verify(&layout.spool_dir(), manifest) {
            Ok(found) if found.segments > 0 => notes.push(format!(
                "the spool's {} bytes hold {} whole frames that match their digests",
                found.bytes, found.frames_checked
            )),
            Ok(_) => {}
            Err(bad) => {
                let finding = Finding::CacheCorrupt {
                    what: "the spool".into(),
                    path: bad.segment.clone(),
                    reason: format!("frame {}: {}", bad.frame, bad.reason),
                };
                let spool = everything()
                    .into_iter()
                    .filter(|p| p.path == layout.spool_dir())
                    .collect();
                return corrupt(finding, spool);
            }
        }
    } else if record.is_some() && manifest.is_none() {
        notes.push(
            "an install is in progress; not checked against its digests (no manifest)".into(),
        );
    }
    if let Some(chunks) = record.as_ref().and_then(|r| r.chunks.as_ref())
        && !chunks.abandoned
        && chunks.batches_done > 0
        && !layout.chunk_cache().exists()
    {
        let finding = Finding::CacheCorrupt {
            what: "the chunk cache".into(),
            path: layout.chunk_cache(),
            reason: format!(
                "is missing, though the install record says {} batches are in it",
                chunks.batches_done
            ),
        };
        return corrupt(finding, everything());
    }
    let keep = if superseded {
        Keep::NOTHING
    } else {
        Keep::for_record(record.as_ref())
    };
    let stale = purge::purgeable(&layout, keep);
    let evidence = json!({
        "install_in_progress": record.as_ref().map(|r| json!({
            "version": r.version, "slot": r.slot, "frames_done": r.frames_done,
            "bytes_downloaded": r.bytes_downloaded, "superseded": superseded,
        })),
        "verified": notes,
        "stale": stale,
    });
    if !stale.is_empty() {
        let finding = Finding::CacheStale {
            n_items: stale.len(),
            bytes: stale.iter().map(|p| p.bytes).sum(),
        };
        return Inspection {
            check: Check::warn(CACHE, &finding, evidence).fixable(),
            remove: stale,
        };
    }
    let summary = if notes.is_empty() {
        "empty: no install in progress, nothing stale".to_owned()
    } else {
        notes.join("; ")
    };
    Inspection {
        check: Check::ok(CACHE, summary, evidence),
        remove: Vec::new(),
    }
}

fn corrupt(finding: Finding, remove: Vec<Purgeable>) -> Inspection {
    let evidence = json!({ "remove": remove });
    Inspection {
        check: Check::fail(CACHE, &finding, evidence).fixable(),
        remove,
    }
}

/// Frames `0..frames_done` of `manifest` in `slot` against their digests.
fn verify_frames(
    slot: &std::path::Path,
    manifest: &Manifest,
    frames_done: usize,
) -> Result<(), String> {
    if frames_done > manifest.frames.len() {
        return Err(format!(
            "the release has only {} frames",
            manifest.frames.len()
        ));
    }
    let file = File::open(slot).map_err(|e| format!("the slot cannot be read: {e}"))?;
    let mut buf = vec![0u8; manifest.frame_size as usize];
    for idx in 0..frames_done {
        let len = manifest.frame_len(idx);
        file.read_exact_at(&mut buf[..len], manifest.frame_image_offset(idx))
            .map_err(|e| format!("frame {idx} cannot be read: {e}"))?;
        if Sha256::of(&buf[..len]) != manifest.frames[idx].sha256 {
            return Err(format!("frame {idx} does not match its digest"));
        }
    }
    Ok(())
}
