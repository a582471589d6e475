//! The JSON that devices read. The agent has its own copy of these shapes, so the
//! wire format is a contract, not a shared Rust type.

use ferry_types::{Sha256, Version};
use serde::{Deserialize, Serialize};

/// An artifact: where to fetch it and how to check it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    /// Path on the server, e.g. `/artifacts/payloads/…`.
    pub url: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
}

/// A tailored delta to a release from one earlier version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delta {
    /// The version it applies to.
    pub from: Version,
    /// The delta artifact.
    pub artifact: Artifact,
}

/// A release as a device sees it in `GET /v1/releases?class=C`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    /// Device class it is built for.
    pub class: String,
    /// Version.
    pub version: Version,
    /// Build id.
    pub build_id: String,
    /// Audience it is open to (customer, beta, …).
    pub audience: String,
    /// `full` (deltas come later).
    pub kind: String,
    /// Unarchived size: what the slot must hold.
    pub image_size: u64,
    /// SHA-256 of the image.
    pub image_sha256: Sha256,
    /// The payload (download size is its size).
    pub payload: Artifact,
    /// The payload's manifest (per-frame digests).
    pub manifest: Artifact,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// Tailored deltas from earlier versions.
    #[serde(default)]
    pub deltas: Vec<Delta>,
}
