//! Types that carry meaning across ferry, parsed once at the edge: [`Version`],
//! [`DeviceId`], [`Identity`], [`Sha256`], the seal's [`RootHash`], [`PayloadKind`], the retry
//! [`Backoff`] (with jitter), and the [`Diagnose`] contract every error honours. No I/O.
//!
//! Every crate uses these and no copies of them: inner code never takes a bare `String`
//! for a version or a bare `[u8; 32]` for a digest; JSON goes through the same
//! constructors as the CLI, so it cannot bypass the checks (an all-zero device id, a
//! malformed version, an upper-case digest).
//!
//! Tests: `cargo test -p ferry-types` (unit tests and this example).
//!
//! ```
//! use ferry_types::{Version, DeviceId};
//! let v1: Version = "1.9".parse().unwrap();
//! let v2: Version = "1.10".parse().unwrap();
//! assert!(v2 > v1);
//! assert!("0000000000000000".parse::<DeviceId>().is_err());
//! ```
#![deny(missing_docs)]

mod backoff;
mod diagnose;
mod digest;
mod id;
mod identity;
mod payload;
mod version;

pub use backoff::Backoff;
pub use diagnose::{Diagnose, Report};
pub use digest::{DeltaDigest, DigestError, RootHash, Sha256, Sha256Hasher};
pub use id::{DeviceId, IdError};
pub use identity::{DeviceClass, DeviceClassError, Identity, MAX_DEVICE_CLASS_LEN};
pub use payload::PayloadKind;
pub use version::{MAX_VERSION_LEN, MAX_VERSION_PARTS, Version, VersionError};
