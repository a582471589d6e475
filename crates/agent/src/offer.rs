//! Which updates a device is offered: a pure function over the release list.

use ferry_types::Version;
use serde::Serialize;

use crate::client::Release;

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
    /// `delta` (tailored to the running version) or `full`.
    pub payload: &'static str,
    /// The tailored delta, when the release has one from the running version.
    #[serde(skip)]
    pub delta: Option<crate::client::Artifact>,
    /// The release behind it.
    #[serde(skip)]
    pub release: Release,
}

/// Whether `release` is open to a device in `audience`. Customer releases are open to
/// every audience; a programme's releases only to its members.
pub fn open_to(release: &Release, audience: &str) -> bool {
    release.audience == audience || release.audience == "customer"
}

/// Offers for a device of `class` in `audience` running `current`: every newer release
/// open to it, newest first, the newest recommended.
pub fn offers(releases: &[Release], class: &str, audience: &str, current: &Version) -> Vec<Offer> {
    let mut newer: Vec<&Release> = releases
        .iter()
        .filter(|r| r.class == class && open_to(r, audience) && &r.version > current)
        .collect();
    newer.sort_by(|a, b| b.version.cmp(&a.version));
    newer
        .iter()
        .enumerate()
        .map(|(idx, r)| {
            let mut offer = to_offer(r, idx == 0);
            if let Some(d) = r.deltas.iter().find(|d| &d.from == current) {
                offer.download_size = d.artifact.size;
                offer.payload = "delta";
                offer.delta = Some(d.artifact.clone());
            }
            offer
        })
        .collect()
}

/// Every full image for the class open to the audience, newest first (`list-full`).
pub fn full_images(releases: &[Release], class: &str, audience: &str) -> Vec<Offer> {
    let mut all: Vec<&Release> = releases
        .iter()
        .filter(|r| r.class == class && open_to(r, audience))
        .collect();
    all.sort_by(|a, b| b.version.cmp(&a.version));
    all.iter().map(|r| to_offer(r, false)).collect()
}

fn to_offer(r: &Release, recommended: bool) -> Offer {
    Offer {
        label: format!("{}-{}", r.class, r.version),
        title: format!("{} {} ({})", r.class, r.version, r.build_id),
        version: r.version.clone(),
        build_id: r.build_id.clone(),
        download_size: r.payload.size,
        image_size: r.image_size,
        recommended,
        action: "restart",
        payload: "full",
        delta: None,
        release: r.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Artifact;
    use ferry_types::Sha256;

    fn release(version: &str, audience: &str) -> Release {
        let artifact = Artifact {
            url: "/x".into(),
            size: 10,
            sha256: Sha256([0; 32]),
        };
        Release {
            class: "vm".into(),
            version: version.parse().unwrap(),
            build_id: format!("b{version}"),
            audience: audience.into(),
            kind: "full".into(),
            image_size: 4096,
            image_sha256: Sha256([1; 32]),
            payload: artifact.clone(),
            manifest: artifact,
            deltas: Vec::new(),
        }
    }

    #[test]
    fn newest_open_release_is_recommended() {
        let all = [
            release("1.0", "customer"),
            release("1.10", "customer"),
            release("1.9", "customer"),
            release("2.0", "beta"),
        ];
        let current: Version = "1.0".parse().unwrap();
        let customer = offers(&all, "vm", "customer", &current);
        assert_eq!(
            customer
                .iter()
                .map(|o| o.version.to_string())
                .collect::<Vec<_>>(),
            ["1.10", "1.9"]
        );
        assert!(customer[0].recommended && !customer[1].recommended);
        let beta = offers(&all, "vm", "beta", &current);
        assert_eq!(beta[0].version.to_string(), "2.0");
        assert!(offers(&all, "vm", "customer", &"1.10".parse().unwrap()).is_empty());
        assert!(offers(&all, "other", "customer", &current).is_empty());
    }
}
