//! What can go wrong with reports and the outbox, each with a stable code, cause and fix.

use std::path::PathBuf;

use ferry_types::Diagnose;

/// A report or batch the server refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportInvalid {
    /// A report in a format version this build does not read.
    #[error("report {sequence} has report_version {version}, and this server reads version 1")]
    Version {
        /// The report's sequence number.
        sequence: u64,
        /// Its version.
        version: u32,
    },
    /// A field out of range or too long.
    #[error("report {sequence} has an invalid {field}: {why}")]
    Field {
        /// The report's sequence number.
        sequence: u64,
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The batch as a whole is not acceptable.
    #[error("the event batch is not valid: {why}")]
    Batch {
        /// What is wrong.
        why: String,
    },
    /// A report names a device other than the one whose credential sent the batch.
    #[error("report {sequence} names device {named}, but the credential is device {credential}'s")]
    OtherDevice {
        /// The report's sequence number.
        sequence: u64,
        /// The device the report names.
        named: String,
        /// The device of the credential.
        credential: String,
    },
}

impl Diagnose for ReportInvalid {
    fn code(&self) -> &'static str {
        match self {
            ReportInvalid::Version { .. } => "REPORT_VERSION_UNSUPPORTED",
            ReportInvalid::Field { .. } | ReportInvalid::Batch { .. } => "REPORT_INVALID",
            ReportInvalid::OtherDevice { .. } => "REPORT_OTHER_DEVICE",
        }
    }

    fn fix(&self) -> String {
        match self {
            ReportInvalid::Version { .. } => {
                "Upgrade the server to a ferry version that reads this report format".into()
            }
            ReportInvalid::Field { .. } | ReportInvalid::Batch { .. } => {
                "Report this bug in ferry with the device's events/ directory (the reports stay queued)".into()
            }
            ReportInvalid::OtherDevice { .. } => {
                "Send each device's reports with its own credential (trust/credential of that device)".into()
            }
        }
    }
}

/// The outbox could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Reading or writing a file of the outbox failed.
    #[error("the event outbox failed while {op} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A queued report does not parse.
    #[error("the queued event report {} is not valid: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl OutboxError {
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> OutboxError {
        let path = path.to_owned();
        move |source| OutboxError::Io { op, path, source }
    }
}

impl Diagnose for OutboxError {
    fn code(&self) -> &'static str {
        match self {
            OutboxError::Io { .. } => "OUTBOX_IO",
            OutboxError::Corrupt { .. } => "OUTBOX_CORRUPT",
        }
    }

    fn fix(&self) -> String {
        match self {
            OutboxError::Io { path, .. } => format!(
                "Check that {} is writable and that its filesystem has free space",
                path.display()
            ),
            OutboxError::Corrupt { path, .. } => format!(
                "Move {} out of the events directory (it was changed outside ferry; the other reports are delivered)",
                path.display()
            ),
        }
    }
}
