//! Positioned reads that turn an early end of file into the right error.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;

use crate::error::{IoAction, SealError};

/// Fills `buf` from `file` at `offset`.
///
/// An early end of file comes back as `SealError::Io` with kind
/// `UnexpectedEof`; callers that know the expected size turn it into a
/// truncation error with [`truncated_as`].
pub(crate) fn read_exact_at(
    file: &File,
    buf: &mut [u8],
    offset: u64,
    action: IoAction,
) -> Result<(), SealError> {
    file.read_exact_at(buf, offset)
        .map_err(|source| SealError::Io {
            action,
            offset,
            source,
        })
}

/// Writes all of `buf` to `file` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> Result<(), SealError> {
    file.write_all_at(buf, offset)
        .map_err(|source| SealError::Io {
            action: IoAction::WriteTree,
            offset,
            source,
        })
}

/// Maps an end-of-file read error to a truncation error; other errors pass.
pub(crate) fn truncated_as(error: SealError, data_size: u64, tree_size: u64) -> SealError {
    match error {
        SealError::Io {
            action,
            offset,
            source,
        } if source.kind() == ErrorKind::UnexpectedEof => match action {
            IoAction::ReadImage => SealError::ImageTruncated { offset, data_size },
            IoAction::ReadTree => SealError::TreeTruncated { offset, tree_size },
            IoAction::WriteTree => SealError::Io {
                action,
                offset,
                source,
            },
        },
        other => other,
    }
}
