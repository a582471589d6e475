//! Which updates a device is offered: a pure function over the verified catalog.
//!
//! Selection is the catalog's ([`ferry_catalog::offer::select_offer`]): for the device's
//! class, audience and exact current version, the newest version open to it, as the delta from
//! its version when one is published, else the full image. Releases open to `customer` are open
//! to every audience (a beta device also gets public releases). The chosen catalog release is
//! then mapped to the [`Release`] the install consumes, every size and digest in it taken from
//! the signed target entries.

use ferry_catalog::{
    DeviceQuery, PayloadKind, Release as CatalogRelease, TargetInfo, chunk_index_target_name,
    chunks_target_name, manifest_target_name, payload_target_name,
};
use ferry_types::Version;
use serde::Serialize;

use crate::client::{Artifact, Release, TARGETS_PATH};

/// The audience whose releases are open to everyone.
pub const CUSTOMER_AUDIENCE: &str = "customer";

/// An available update, as `ferry list` shows it (like `softwareupdate --list`).
#[derive(Debug, Clone, Serialize)]
pub struct Offer {
    /// What to pass to `ferry install`.
    pub label: String,
    /// Human title.
    pub title: String,
    /// Version offered.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Bytes to download.
    pub download_size: u64,
    /// Bytes the slot must hold.
    pub image_size: u64,
    /// The one the device should take.
    pub recommended: bool,
    /// What installing it takes.
    pub action: &'static str,
    /// `full` or `delta`.
    pub kind: String,
    /// The tailored delta (from the running version), when this offer is one. The full
    /// payload stays in `release` for the fallback, and its manifest verifies both.
    #[serde(skip)]
    pub delta: Option<Artifact>,
    /// The delta's manifest pin signed with it (`ReleaseInfo::delta_manifest_digest`); a
    /// delta without one is not applied (an older catalog) and the install falls back.
    #[serde(skip)]
    pub delta_manifest_digest: Option<ferry_types::DeltaDigest>,
    /// The chunked form of the full image, when published: used when no tailored delta
    /// applies, reusing what the running slot holds. Its manifest is the full payload's.
    #[serde(skip)]
    pub chunks: Option<ChunkedPayload>,
    /// The release behind it.
    #[serde(skip)]
    pub release: Release,
}

/// A chunked payload and its index, as signed catalog targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedPayload {
    /// The chunk payload (independent zstd frames, fetched by byte ranges).
    pub payload: Artifact,
    /// Its index (`ferry_delta::PayloadIndex`), fetched whole and checked first.
    pub index: Artifact,
}

/// The offer for a device of `class` in `audience` running `current`, from the verified
/// catalog `releases`; `target` looks a target up by name in the same catalog (for the
/// manifest). Empty when nothing newer is open to the device.
pub fn offers(
    releases: &[CatalogRelease],
    target: impl Fn(&str) -> Option<TargetInfo>,
    class: &str,
    audience: &str,
    current: &Version,
) -> Vec<Offer> {
    let releases = open_to_audience(releases, audience);
    let query = DeviceQuery {
        device_class: class,
        audience,
        current_version: current,
    };
    ferry_catalog::offer::select_offer(&releases, &query)
        .and_then(|offer| to_offer(&offer.release, &target, true))
        .into_iter()
        .collect()
}

/// Every full image for the class open to the audience, newest first (`list-full`).
pub fn full_images(
    releases: &[CatalogRelease],
    target: impl Fn(&str) -> Option<TargetInfo>,
    class: &str,
    audience: &str,
) -> Vec<Offer> {
    let releases = open_to_audience(releases, audience);
    let any_version = Version::parse("0").expect("0 is a version");
    let query = DeviceQuery {
        device_class: class,
        audience,
        current_version: &any_version,
    };
    ferry_catalog::offer::list_full(&releases, &query)
        .into_iter()
        .filter_map(|release| to_offer(release, &target, false))
        .collect()
}

/// The releases with `audience` added to those open to customers.
fn open_to_audience(releases: &[CatalogRelease], audience: &str) -> Vec<CatalogRelease> {
    releases
        .iter()
        .cloned()
        .map(|mut release| {
            if release.info.is_open_to(CUSTOMER_AUDIENCE) && !release.info.is_open_to(audience) {
                release.info.audiences.push(audience.to_owned());
            }
            release
        })
        .collect()
}

/// The install's view of a catalog release; `None` when its manifest target is missing.
fn to_offer(
    release: &CatalogRelease,
    target: &impl Fn(&str) -> Option<TargetInfo>,
    recommended: bool,
) -> Option<Offer> {
    let info = &release.info;
    // A delta target stands for its version's full release: the install needs the full
    // payload (to fall back to) and its manifest (to verify what the delta wrote).
    let (full_target, delta) = match &info.payload {
        PayloadKind::Full => (release.target.clone(), None),
        PayloadKind::Delta { .. } => (
            target(&payload_target_name(
                &info.device_class,
                &info.version.to_string(),
            ))?,
            Some(artifact(&release.target)),
        ),
        PayloadKind::Chunks => return None,
    };
    let chunks_name = chunks_target_name(&info.device_class, &info.version.to_string());
    let chunks = target(&chunks_name).and_then(|payload| {
        let index = target(&chunk_index_target_name(&chunks_name)?)?;
        Some(ChunkedPayload {
            payload: artifact(&payload),
            index: artifact(&index),
        })
    });
    let manifest = target(&manifest_target_name(&full_target.name)?)?;
    let version = info.version.clone();
    let kind = match &info.payload {
        PayloadKind::Full => "full".to_owned(),
        PayloadKind::Delta { .. } => "delta".to_owned(),
        PayloadKind::Chunks => "chunks".to_owned(),
    };
    let release = Release {
        class: info.device_class.clone(),
        version: version.clone(),
        build_id: info.build_id.clone(),
        audiences: info.audiences.clone(),
        kind: kind.clone(),
        image_size: info.unarchived_size,
        image_sha256: info.image_sha256,
        payload: artifact(&full_target),
        manifest: artifact(&manifest),
    };
    Some(Offer {
        label: format!("{}-{}", release.class, release.version),
        title: format!(
            "{} {} ({})",
            release.class, release.version, release.build_id
        ),
        version,
        build_id: release.build_id.clone(),
        download_size: delta.as_ref().map_or(release.payload.size, |d| d.size),
        image_size: release.image_size,
        recommended,
        action: "restart",
        kind,
        delta_manifest_digest: delta.as_ref().and(info.delta_manifest_digest),
        delta,
        chunks,
        release,
    })
}

/// A signed target as the install fetches it: `/tuf/targets/<sha256>.<name>`, with its
/// signed length and digest.
fn artifact(target: &TargetInfo) -> Artifact {
    Artifact {
        url: format!("{TARGETS_PATH}{}.{}", target.sha256.to_hex(), target.name),
        size: target.length,
        sha256: target.sha256,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_catalog::{ReleaseInfo, payload_target_name};
    use ferry_types::Sha256;

    fn release(version: &str, audiences: &[&str], from: Option<&str>) -> CatalogRelease {
        let name = match from {
            Some(from) => format!("vm-{from}-to-{version}.delta.payload.zst"),
            None => payload_target_name("vm", version),
        };
        CatalogRelease {
            target: TargetInfo {
                name,
                length: 10,
                sha256: Sha256::of(version.as_bytes()),
            },
            info: ReleaseInfo {
                device_class: "vm".into(),
                version: Version::parse(version).unwrap(),
                build_id: format!("b{version}"),
                audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
                component: "system".into(),
                payload: from.map_or(PayloadKind::Full, |from| PayloadKind::Delta {
                    from: Version::parse(from).unwrap(),
                }),
                download_size: 10,
                unarchived_size: 4096,
                image_sha256: Sha256::of(b"image"),
                seal_root_hash: None,
                delta_manifest_digest: None,
            },
        }
    }

    fn manifest(name: &str) -> Option<TargetInfo> {
        Some(TargetInfo {
            name: name.to_owned(),
            length: 7,
            sha256: Sha256::of(name.as_bytes()),
        })
    }

    fn offered(all: &[CatalogRelease], audience: &str, current: &str) -> Vec<String> {
        offers(all, manifest, "vm", audience, &current.parse().unwrap())
            .iter()
            .map(|o| format!("{} {}", o.version, o.kind))
            .collect()
    }

    #[test]
    fn the_newest_open_version_is_offered_as_a_delta_when_there_is_one() {
        let all = [
            release("1.0", &["customer"], None),
            release("1.10", &["customer"], None),
            release("1.10", &["customer"], Some("1.0")),
            release("1.9", &["customer"], None),
            release("2.0", &["beta"], None),
        ];
        assert_eq!(offered(&all, "customer", "1.0"), ["1.10 delta"]);
        assert_eq!(offered(&all, "customer", "1.9"), ["1.10 full"]);
        assert_eq!(offered(&all, "beta", "1.0"), ["2.0 full"]);
        assert!(offered(&all, "customer", "1.10").is_empty());
        assert!(offers(&all, manifest, "other", "customer", &"1.0".parse().unwrap()).is_empty());
    }

    #[test]
    fn offers_carry_the_signed_sizes_and_digests_of_payload_and_manifest() {
        let all = [release("2.0", &["customer"], None)];
        let offer = &offers(&all, manifest, "vm", "customer", &"1.0".parse().unwrap())[0];
        assert!(offer.recommended);
        assert_eq!(offer.label, "vm-2.0");
        let payload_digest = Sha256::of(b"2.0");
        assert_eq!(
            offer.release.payload.url,
            format!(
                "/tuf/targets/{}.vm-2.0.payload.zst",
                payload_digest.to_hex()
            )
        );
        assert_eq!(offer.release.payload.sha256.0, *payload_digest.as_bytes());
        assert_eq!(offer.release.manifest.size, 7);
        assert!(
            offer
                .release
                .manifest
                .url
                .ends_with(".vm-2.0.manifest.json")
        );
        // No manifest target: no offer.
        assert!(offers(&all, |_| None, "vm", "customer", &"1.0".parse().unwrap()).is_empty());
    }

    #[test]
    fn offers_carry_the_chunked_payload_and_its_index_when_both_are_signed() {
        let all = [release("2.0", &["customer"], None)];
        let with_chunks = |name: &str| manifest(name);
        let offer = &offers(&all, with_chunks, "vm", "customer", &"1.0".parse().unwrap())[0];
        let chunks = offer.chunks.as_ref().expect("chunked payload offered");
        assert!(chunks.payload.url.ends_with(".vm-2.0.chunks.zst"));
        assert!(chunks.index.url.ends_with(".vm-2.0.chunks.index"));
        assert_eq!(offer.kind, "full");
        // No index target: no chunk reuse (the full payload stays).
        let without_index = |name: &str| {
            (!name.ends_with(".chunks.index"))
                .then(|| manifest(name))
                .flatten()
        };
        let offer = &offers(
            &all,
            without_index,
            "vm",
            "customer",
            &"1.0".parse().unwrap(),
        )[0];
        assert!(offer.chunks.is_none());
        // A chunks release is never offered by itself.
        let mut chunks_only = release("3.0", &["customer"], None);
        chunks_only.info.payload = PayloadKind::Chunks;
        chunks_only.target.name = "vm-3.0.chunks.zst".into();
        let offered = offers(
            &[chunks_only],
            manifest,
            "vm",
            "customer",
            &"1.0".parse().unwrap(),
        );
        assert!(offered.is_empty());
    }

    #[test]
    fn full_images_list_every_open_version_newest_first() {
        let all = [
            release("1.0", &["customer"], None),
            release("2.0", &["beta"], None),
            release("2.0", &["customer"], Some("1.0")),
        ];
        let listed = |audience| {
            full_images(&all, manifest, "vm", audience)
                .iter()
                .map(|o| o.version.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(listed("customer"), ["1.0"]);
        assert_eq!(listed("beta"), ["2.0", "1.0"]);
    }
}
