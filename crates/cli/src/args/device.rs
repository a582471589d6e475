//! Flags of the device-side commands: `device init`, `list`, `install`, `download`, `agent`,
//! `progress`, `reboot`, `deliver`, `audience`, `defer`, `tuf`, and the device every one acts on.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry_types::Version;

/// `ferry deliver`.
#[derive(Debug, Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Keep trying, with the back-off, for up to this many seconds until the outbox is
    /// empty (without it: one round).
    #[arg(long)]
    pub wait: Option<u64>,
}

/// `ferry device …`.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Make a simulated device directory.
    Init(DeviceInitArgs),
}

/// `ferry device init`.
#[derive(Debug, Args)]
pub struct DeviceInitArgs {
    /// Device directory to create.
    pub dir: PathBuf,
    /// Device class.
    #[arg(long)]
    pub class: String,
    /// Image for slot A.
    #[arg(long)]
    pub image: PathBuf,
    /// Version of that image.
    #[arg(long)]
    pub version: Version,
    /// Update server URL (https://HOST:PORT).
    #[arg(long)]
    pub server: String,
    /// The server's CA certificate to pin (the server's DIR/pki/ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// One-time enrollment token (`ferry server token --data DIR`); base64url, so it
    /// may start with '-'. Other users can read a command line: prefer
    /// --enroll-token-file or FERRY_ENROLL_TOKEN.
    #[arg(
        long,
        env = "FERRY_ENROLL_TOKEN",
        hide_env_values = true,
        allow_hyphen_values = true,
        required_unless_present = "enroll_token_file",
        conflicts_with = "enroll_token_file"
    )]
    pub enroll_token: Option<String>,
    /// Read the one-time enrollment token from FILE (`-`: standard input), so it never
    /// shows in the process list.
    #[arg(long, value_name = "FILE")]
    pub enroll_token_file: Option<PathBuf>,
    /// Audience.
    #[arg(long, default_value = "customer")]
    pub audience: String,
    /// Capacity of each slot in bytes (default: twice the image, at least 64 MiB).
    #[arg(long)]
    pub slot_size: Option<u64>,
    /// Boot-control backend.
    #[arg(long, value_enum, default_value = "file")]
    pub boot: BootKind,
    /// A health check run at boot before a new slot is committed (repeatable).
    #[arg(long = "health-check")]
    pub health_checks: Vec<String>,
    /// The catalog root to pin (the server's DATA/tuf/metadata/N.root.json, shipped with the
    /// device image): the device trusts only what it signs.
    #[arg(long, required_unless_present = "trust_on_first_use")]
    pub root: Option<PathBuf>,
    /// Without --root: fetch the root from the server and trust whatever it sends this once.
    #[arg(long, conflicts_with = "root")]
    pub trust_on_first_use: bool,
}

/// `ferry audience …`.
#[derive(Debug, Subcommand)]
pub enum AudienceCommand {
    /// Join an audience (beta, customer, or a programme's name); durable.
    Set(AudienceSetArgs),
}

/// `ferry audience set`.
#[derive(Debug, Args)]
pub struct AudienceSetArgs {
    /// beta, customer, or a programme's name.
    pub audience: String,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `ferry list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// For every release in the catalog the device does not run, why it is or is not
    /// offered (from the verified catalog and the director's signed decision).
    #[arg(long)]
    pub why: bool,
}

/// `ferry defer`.
#[derive(Debug, Args)]
pub struct DeferArgs {
    /// The release's version.
    pub version: String,
    /// For how long: 30m, 4h, 1d.
    #[arg(long = "for")]
    pub for_: String,
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// `ferry tuf`: the TUF community's client-under-test CLI.
#[derive(Debug, Args)]
pub struct TufArgs {
    /// Directory of the trusted metadata.
    #[arg(long)]
    pub metadata_dir: PathBuf,
    /// Base URL of the metadata.
    #[arg(long)]
    pub metadata_url: Option<String>,
    /// Target to download (repeatable: downloaded in order, stopping at the first failure).
    #[arg(long)]
    pub target_name: Vec<String>,
    /// Base URL of the targets.
    #[arg(long)]
    pub target_base_url: Option<String>,
    /// Directory to download targets into.
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub action: TufAction,
}

/// `ferry tuf` actions.
#[derive(Debug, Subcommand)]
pub enum TufAction {
    /// Trust ROOT: copy it into the metadata directory (no request is made).
    Init {
        /// The trusted root metadata file.
        root: PathBuf,
    },
    /// Refresh the top-level metadata from --metadata-url.
    Refresh,
    /// Refresh, then download --target-name into --target-dir, verified.
    Download,
}

/// The device a command acts on.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Device directory.
    #[arg(long, env = "FERRY_DEVICE")]
    pub device: PathBuf,
    /// Machine-readable output (stable for scripts).
    #[arg(long)]
    pub json: bool,
}

/// `ferry reboot`.
#[derive(Debug, Args)]
pub struct RebootArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Simulate a new system that crashes before its boot check (spends one try).
    #[arg(long)]
    pub simulate_crash: bool,
}

/// Boot-control backend for a new device.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BootKind {
    /// A JSON file in boot/.
    File,
    /// A GRUB environment block (boot/grubenv), as grub-editenv writes it.
    Grub,
    /// A redundant U-Boot environment (boot/uboot.env, boot/fw_env.config).
    Uboot,
}

/// `ferry install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Label from `ferry list`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub label: Option<String>,
    /// Install the recommended update.
    #[arg(long)]
    pub all: bool,
    /// Print every progress step.
    #[arg(long)]
    pub verbose: bool,
    /// Restart into the new slot when done.
    #[arg(long)]
    pub restart: bool,
}

/// `ferry download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Label from `ferry list` (default: the recommended update).
    pub label: Option<String>,
    /// Print every progress step.
    #[arg(long)]
    pub verbose: bool,
}

/// `ferry agent`: run the daemon, or steer the one that runs.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// Device directory.
    #[arg(long, env = "FERRY_DEVICE", global = true)]
    pub device: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Steering the running agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum AgentCommand {
    /// Stop the running download or install; it continues when asked again.
    Cancel,
    /// Stop the running job and start nothing until resumed.
    Suspend,
    /// Start again, continuing the job a suspension stopped.
    Resume,
    /// Scan now.
    Scan,
    /// Read config.toml again (as SIGHUP does); an invalid file is refused and the running
    /// config stays.
    Reload,
}

/// `ferry progress`.
#[derive(Debug, Args)]
pub struct ProgressArgs {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Follow the running job's progress until it ends.
    #[arg(long)]
    pub follow: bool,
}
