use ferry_types::{Diagnose, Sha256};

/// What can go wrong making or reading a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// A frame's bytes are not a valid zstd frame of the expected size.
    #[error("frame {frame} of the payload is corrupt: {reason}")]
    FrameCorrupt {
        /// Frame index.
        frame: usize,
        /// What the decoder said.
        reason: String,
    },
    /// A frame decoded, but its bytes are not the ones the manifest promised.
    #[error(
        "frame {frame} decoded to bytes whose SHA-256 is {actual}, but the manifest expects {expected}"
    )]
    DigestMismatch {
        /// Frame index.
        frame: usize,
        /// From the manifest.
        expected: Sha256,
        /// Computed.
        actual: Sha256,
    },
    /// The manifest contradicts itself or the format.
    #[error("the payload manifest is invalid: {0}")]
    ManifestInvalid(String),
    /// Reading the image or writing the payload failed.
    #[error("payload I/O failed while {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Diagnose for PayloadError {
    fn code(&self) -> &'static str {
        match self {
            PayloadError::FrameCorrupt { .. } => "PAYLOAD_CORRUPT",
            PayloadError::DigestMismatch { .. } => "DIGEST_MISMATCH",
            PayloadError::ManifestInvalid(_) => "MANIFEST_INVALID",
            PayloadError::Io { .. } => "PAYLOAD_IO",
        }
    }

    fn fix(&self) -> String {
        match self {
            PayloadError::FrameCorrupt { .. } | PayloadError::DigestMismatch { .. } => {
                "Run the install again, and if it repeats, republish the release or check the proxy between \
                 device and server (the bytes were altered on the way or on the server)"
                    .into()
            }
            PayloadError::ManifestInvalid(_) => {
                "Republish the release with this version of ferry (the stored manifest cannot be used)".into()
            }
            PayloadError::Io { .. } => "Check that the files exist, are readable and the disk is not full".into(),
        }
    }
}
