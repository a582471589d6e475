//! The one error type of this crate: each variant has a stable code, a one-sentence cause
//! (its `Display`) and a one-sentence fix ([`Diagnose`]).

use std::io;

use ferry_types::Diagnose;

/// A failure while encoding, applying, planning or assembling an update.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The reference image is not the image the delta was built from.
    #[error(
        "the reference image does not match the delta's base ({what}): expected {expected}, found {found}"
    )]
    BaseMismatch {
        /// Which check failed (size, digest of the blocks read).
        what: &'static str,
        /// The expected value (hex digest or size).
        expected: String,
        /// The value found in the reference.
        found: String,
    },
    /// The delta stream is malformed or truncated.
    #[error("the delta stream is corrupt at {section}: {detail}")]
    DeltaCorrupt {
        /// The part of the stream that failed to parse.
        section: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Data rebuilt from the delta or payload does not hash to the digest in its manifest or index.
    #[error("{what} at offset {offset} hashes to {found}, not to the expected {expected}")]
    DigestMismatch {
        /// What was checked (output window, chunk, reused extent).
        what: &'static str,
        /// Offset in the new image of the checked data.
        offset: u64,
        /// Expected digest (hex).
        expected: String,
        /// Digest found (hex).
        found: String,
    },
    /// The delta's manifest is not the one the caller expected (e.g. from the signed catalog).
    #[error("the delta manifest digest is {found}, not the expected {expected}")]
    ManifestMismatch {
        /// Expected manifest digest (hex).
        expected: String,
        /// Digest of the manifest received (hex).
        found: String,
    },
    /// The delta or payload asks for more memory than the device allows.
    #[error("{what} needs {needed} bytes, above the limit of {limit} bytes")]
    LimitExceeded {
        /// Which buffer.
        what: &'static str,
        /// Bytes requested.
        needed: u64,
        /// Bytes allowed.
        limit: u64,
    },
    /// Reading or writing an image, the delta stream or the sink failed.
    #[error("{operation} failed: {source}")]
    Io {
        /// The operation that failed (e.g. "read reference", "write sink").
        operation: &'static str,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// zstd refused to compress or decompress.
    #[error("zstd {operation} failed: {detail}")]
    Compression {
        /// "compress" or "decompress".
        operation: &'static str,
        /// The zstd error name.
        detail: String,
    },
    /// The payload index is malformed or does not describe the payload.
    #[error("the payload index is invalid: {detail}")]
    IndexInvalid {
        /// What was wrong.
        detail: String,
    },
    /// A chunk the assembler needs was neither reused nor downloaded.
    #[error("chunk {chunk} is needed at offset {offset} but has not been downloaded")]
    ChunkMissing {
        /// Chunk number in the index.
        chunk: usize,
        /// Offset in the new image where it is needed.
        offset: u64,
    },
}

impl Diagnose for Error {
    fn code(&self) -> &'static str {
        match self {
            Error::BaseMismatch { .. } => "BASE_MISMATCH",
            Error::DeltaCorrupt { .. } => "DELTA_CORRUPT",
            Error::DigestMismatch { .. } => "DIGEST_MISMATCH",
            Error::ManifestMismatch { .. } => "MANIFEST_MISMATCH",
            Error::LimitExceeded { .. } => "DELTA_LIMIT",
            Error::Io { .. } => "DELTA_IO",
            Error::Compression { .. } => "DELTA_COMPRESSION",
            Error::IndexInvalid { .. } => "INDEX_INVALID",
            Error::ChunkMissing { .. } => "CHUNK_MISSING",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            Error::BaseMismatch { .. } => {
                "Download the full image or the delta built from the version this slot runs"
            }
            Error::DeltaCorrupt { .. } => {
                "Discard the cached delta and download it again; if it recurs, republish the delta"
            }
            Error::DigestMismatch { .. } => {
                "Discard the download and fetch it again; if it recurs, check the storage for faults"
            }
            Error::ManifestMismatch { .. } => {
                "Refresh the catalog and download the delta it names; do not install this one"
            }
            Error::LimitExceeded { .. } => {
                "Publish the update with smaller segments or use the full image on this device"
            }
            Error::Io { .. } => {
                "Check that the slot and cache paths exist, are readable and have free space"
            }
            Error::Compression { .. } => "Download the update again; if it recurs, republish it",
            Error::IndexInvalid { .. } => {
                "Refresh the catalog and download the payload index again"
            }
            Error::ChunkMissing { .. } => {
                "Fetch every range the planner returned before assembling, then resume"
            }
        };
        fix.into()
    }
}

impl Error {
    pub(crate) fn io(operation: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { operation, source }
    }

    pub(crate) fn corrupt(section: &'static str, detail: impl Into<String>) -> Error {
        Error::DeltaCorrupt {
            section,
            detail: detail.into(),
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
