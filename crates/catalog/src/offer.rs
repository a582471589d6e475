//! Offer selection: a pure function of the catalog's releases and the device's class, audience
//! and current version.

use crate::client::Release;
use crate::release::PayloadKind;
use ferry_types::Version;

/// What the device runs now, as offer selection needs it.
#[derive(Debug, Clone, Copy)]
pub struct DeviceQuery<'a> {
    /// The device class (`identity.json`'s `device_class`).
    pub device_class: &'a str,
    /// The audience the device belongs to (`customer`, `beta`, …).
    pub audience: &'a str,
    /// The version the device runs.
    pub current_version: &'a Version,
}

/// The update offered to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The version the offer installs.
    pub version: Version,
    /// The payload to download: a delta from the current version when one is published,
    /// else the full image.
    pub release: Release,
}

impl Offer {
    /// Whether the offer is a delta.
    pub fn is_delta(&self) -> bool {
        matches!(self.release.info.payload, PayloadKind::Delta { .. })
    }
}

/// The newest version above the device's current one that is open to its class and audience
/// and installable from where it is: the delta from its exact version when the catalog has one,
/// else the full image. A newer version with neither is skipped in favour of the next newest.
pub fn select_offer(releases: &[Release], device: &DeviceQuery<'_>) -> Option<Offer> {
    let mut candidates: Vec<&Release> = releases
        .iter()
        .filter(|release| is_for(release, device) && release.info.version > *device.current_version)
        .collect();
    candidates.sort_by(|a, b| b.info.version.cmp(&a.info.version));
    let mut version_idx = 0;
    while version_idx < candidates.len() {
        let version = &candidates[version_idx].info.version;
        let same_version: Vec<&Release> = candidates[version_idx..]
            .iter()
            .take_while(|release| release.info.version == *version)
            .copied()
            .collect();
        let delta = same_version.iter().find(|release| {
            matches!(&release.info.payload, PayloadKind::Delta { from } if from == device.current_version)
        });
        let full = same_version
            .iter()
            .find(|release| release.info.payload == PayloadKind::Full);
        if let Some(release) = delta.or(full) {
            return Some(Offer {
                version: release.info.version.clone(),
                release: (*release).clone(),
            });
        }
        version_idx += same_version.len();
    }
    None
}

/// Every full image open to the device's class and audience, newest first (`ferry list-full`).
/// The current version is not used.
pub fn list_full<'a>(releases: &'a [Release], device: &DeviceQuery<'_>) -> Vec<&'a Release> {
    let mut full: Vec<&Release> = releases
        .iter()
        .filter(|release| is_for(release, device) && release.info.payload == PayloadKind::Full)
        .collect();
    full.sort_by(|a, b| {
        b.info
            .version
            .cmp(&a.info.version)
            .then_with(|| a.target.name.cmp(&b.target.name))
    });
    full
}

fn is_for(release: &Release, device: &DeviceQuery<'_>) -> bool {
    release.info.device_class == device.device_class && release.info.is_open_to(device.audience)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::TargetInfo;
    use crate::release::ReleaseInfo;
    use ferry_types::Sha256;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("version")
    }

    fn release(class: &str, version: &str, audiences: &[&str], from: Option<&str>) -> Release {
        let name = match from {
            Some(from) => format!("{class}-{from}-to-{version}.delta"),
            None => format!("{class}-{version}.full"),
        };
        Release {
            target: TargetInfo {
                name,
                length: 1,
                sha256: Sha256::of(b"x"),
            },
            info: ReleaseInfo {
                device_class: class.into(),
                version: v(version),
                build_id: format!("B{version}"),
                audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
                component: "system".into(),
                payload: from.map_or(PayloadKind::Full, |from| PayloadKind::Delta {
                    from: v(from),
                }),
                download_size: 1,
                unarchived_size: 1,
                image_sha256: Sha256::of(b"image"),
                seal_root_hash: None,
                delta_manifest_digest: None,
            },
        }
    }

    fn catalog() -> Vec<Release> {
        vec![
            release("gw", "1.9", &["customer", "beta"], None),
            release("gw", "1.10", &["customer", "beta"], None),
            release("gw", "1.10", &["customer", "beta"], Some("1.9")),
            release("gw", "1.11", &["beta"], None),
            release("gw", "1.11", &["beta"], Some("1.10")),
            release("cam", "5.0", &["customer"], None),
        ]
    }

    fn offer(audience: &str, current: &str) -> Option<Offer> {
        let current = v(current);
        select_offer(
            &catalog(),
            &DeviceQuery {
                device_class: "gw",
                audience,
                current_version: &current,
            },
        )
    }

    #[test]
    fn newest_version_open_to_the_audience_wins() {
        let customer = offer("customer", "1.9").expect("customer offer");
        assert_eq!(customer.version, v("1.10"));
        let beta = offer("beta", "1.9").expect("beta offer");
        assert_eq!(beta.version, v("1.11"));
    }

    #[test]
    fn delta_only_from_the_exact_current_version() {
        let from_exact = offer("customer", "1.9").expect("offer");
        assert!(from_exact.is_delta());
        assert_eq!(from_exact.release.target.name, "gw-1.9-to-1.10.delta");
        let from_other = offer("beta", "1.9").expect("offer");
        assert!(!from_other.is_delta(), "no 1.9→1.11 delta is published");
        assert!(offer("beta", "1.10").expect("offer").is_delta());
    }

    #[test]
    fn nothing_newer_means_no_offer_and_other_classes_are_ignored() {
        assert_eq!(offer("customer", "1.10"), None);
        assert_eq!(offer("customer", "7.0"), None);
        assert_eq!(offer("nobody", "1.0"), None);
    }

    #[test]
    fn a_newer_version_without_an_installable_payload_is_skipped() {
        let mut releases = catalog();
        releases.push(release("gw", "2.0", &["customer"], Some("1.10")));
        let current = v("1.9");
        let query = DeviceQuery {
            device_class: "gw",
            audience: "customer",
            current_version: &current,
        };
        assert_eq!(
            select_offer(&releases, &query).expect("offer").version,
            v("1.10")
        );
    }

    #[test]
    fn list_full_is_newest_first_and_audience_filtered() {
        let current = v("0");
        let releases = catalog();
        let customer = list_full(
            &releases,
            &DeviceQuery {
                device_class: "gw",
                audience: "customer",
                current_version: &current,
            },
        );
        let versions: Vec<String> = customer
            .iter()
            .map(|r| r.info.version.to_string())
            .collect();
        assert_eq!(versions, ["1.10", "1.9"]);
        let beta = list_full(
            &releases,
            &DeviceQuery {
                device_class: "gw",
                audience: "beta",
                current_version: &current,
            },
        );
        assert_eq!(beta.len(), 3);
    }
}
