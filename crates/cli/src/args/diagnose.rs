//! Flags of the commands that look into a device: `log`, `fsm`, `doctor`, `purge-cache`.

use clap::{Args, Subcommand};

use super::DeviceArgs;

/// `ferry log …`.
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Show journal records (oldest first).
    Show(LogShowArgs),
    /// Re-run the machines' tables over the journal; exit 1 at the first divergence.
    Replay(DeviceArgs),
    /// Chart an install's progress: ferry's percent beside the fixed-checkpoint bar's, and
    /// the time remaining (estimate, range, real) over time.
    Chart(LogChartArgs),
}

/// `ferry log chart`.
#[derive(Debug, Args)]
pub struct LogChartArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Where to write the chart: FILE.svg or FILE.png.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// The update (its UUID); the most recent install's when not given.
    #[arg(long)]
    pub update: Option<uuid::Uuid>,
}

/// `ferry log show`.
#[derive(Debug, Args)]
pub struct LogShowArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Only this machine (scan_manager, scan, recovery_scan, downloader, controller, update).
    #[arg(long)]
    pub fsm: Option<String>,
    /// Only this instance (e.g. an update UUID).
    #[arg(long)]
    pub id: Option<String>,
}

/// `ferry fsm …`.
#[derive(Debug, Subcommand)]
pub enum FsmCommand {
    /// Print a machine as Graphviz.
    Dot {
        /// Machine name.
        name: String,
    },
    /// Print a machine's transition table.
    Table {
        /// Machine name.
        name: String,
    },
    /// List the machines.
    List,
}

/// `ferry doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Repair what is safe to repair (purge a corrupt or stale cache, refresh the
    /// catalog, re-take the personalization key set) and say what was done; never a
    /// slot, the journal or the receipts.
    #[arg(long)]
    pub fix: bool,
}

/// `ferry purge-cache`.
#[derive(Debug, Args)]
pub struct PurgeCacheArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Also the install in progress (its record, spool and chunk cache): the next install
    /// starts from the beginning.
    #[arg(long)]
    pub all: bool,
}
