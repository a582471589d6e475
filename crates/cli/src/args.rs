//! Every flag of the `ferry` command, parsed and validated; nothing runs here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ferry_types::Version;

/// ferry: operating-system updates for fleets of Linux devices and VMs.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    /// Logs as JSON lines (on stderr).
    #[arg(long, global = true, env = "FERRY_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the update server (`ferry server init` creates its catalog).
    Server(ServerArgs),
    /// Publish a system image as a release.
    Publish(PublishArgs),
    /// Manage simulated devices.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// List the updates available to the device (`--why`: every release it does not run,
    /// with the one reason it is or is not offered).
    List(ListArgs),
    /// List every full image for the device's class.
    ListFull(DeviceArgs),
    /// Download and install an update into the inactive slot.
    Install(InstallArgs),
    /// Stage an update (personalized, downloaded, verified, sealed) to install later.
    Download(DownloadArgs),
    /// The device daemon: background scans, downloads and installs by policy, and the
    /// local API every device command uses while it runs; or steer the running one.
    Agent(AgentArgs),
    /// The live progress bar of the agent's job (`--follow`), or where it stands.
    Progress(ProgressArgs),
    /// Show what the device runs and what each slot holds.
    Status(DeviceArgs),
    /// Show every install.
    History(DeviceArgs),
    /// Simulate a restart: boot the new slot if it verifies, else fall back.
    Reboot(RebootArgs),
    /// Check every known cause of failure and name the one that applies.
    Doctor(DoctorArgs),
    /// Remove what the device can spare from its cache (stale downloads, temp files).
    PurgeCache(PurgeCacheArgs),
    /// Check the slot that booted and commit to it (what a real device runs at boot).
    BootCheck(DeviceArgs),
    /// Deliver the device's queued event reports to its server (device commands also do
    /// at their end, waiting at most 5 s).
    Deliver(DeliverArgs),
    /// Move the device to another audience.
    #[command(subcommand)]
    Audience(AudienceCommand),
    /// Defer a release under a rollout (up to the rollout's maximum, never past its
    /// deadline): the agent does not take it on its own until then.
    Defer(DeferArgs),
    /// The TUF conformance client protocol (init, refresh, download), exit 0 or 1.
    Tuf(TufArgs),
    /// The whole story on loopback: server, two releases, a device, an update.
    Demo(DemoArgs),
    /// Measure the server.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a LAN content cache in front of an update server.
    Cache(CacheArgs),
    /// Roll a release out in waves (server side, on the data directory): create, list,
    /// show, pause, resume, halt, explain.
    Rollout(RolloutArgs),
    /// Which devices may get which releases (server side, on the data directory): grant,
    /// revoke, list; and the tenant, region and tags grants and cohorts select by.
    Entitlement(EntitlementArgs),
    /// Read and check the device's state-machine journal.
    #[command(subcommand)]
    Log(LogCommand),
    /// Print the agent's state machines.
    #[command(subcommand)]
    Fsm(FsmCommand),
}

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

/// `ferry server`: run it (HTTPS), or administer its data directory.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// Data directory (database, artifacts, pki/, keys-online/, admin-token).
    #[arg(long, required = true)]
    pub data: Option<PathBuf>,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas share one
    /// PostgreSQL; set FERRY_DATABASE to keep the password off the process list) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Where artifacts and the served catalog are kept: `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`
    /// (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the query), shared by
    /// replicas, or a directory (default DATA/artifacts). `ferry publish` and `ferry server`
    /// must name the same store.
    #[arg(long, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest accepted difference between a device's clock and the server's, seconds.
    #[arg(long, default_value_t = 60)]
    pub clock_skew_limit: u64,
    /// Ticket requests one device may make per minute.
    #[arg(long, default_value_t = 60)]
    pub rate_limit: u32,
    /// A development server: make the catalog on first start with its offline root and
    /// targets keys in DATA/keys-offline (a real server refuses to start with them there).
    #[arg(long)]
    pub dev_keys: bool,
    /// Seconds a device with an update in progress may go without reporting before the
    /// fleet shows it silent.
    #[arg(long, default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub silent_after: u64,
    /// Seconds the leader lease lasts (replicas on PostgreSQL): the timestamp re-signing and
    /// the silent-device watch move to another replica within 4/3 of it after the leader dies.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lease_ttl: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// What one connection may cost `ferry server` or `ferry cache` (`ferry_server::serve`).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Connections served at once; more wait in the listen backlog (default: half the
    /// descriptor limit, raised to the hard limit at start, less 32; at most 4096).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a client has for the TLS handshake.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub handshake_timeout: u64,
    /// Seconds a client has to send a request's head once the connection is ready for it
    /// (after the handshake or the previous answer): also how long an unused keep-alive
    /// connection stays open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Seconds without a byte moving either way after which a connection is closed.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
}

impl LimitArgs {
    /// The limits these flags name.
    pub fn limits(&self) -> ferry_server::serve::Limits {
        let secs = std::time::Duration::from_secs;
        ferry_server::serve::Limits {
            max_connections: self
                .max_connections
                .unwrap_or_else(ferry_server::serve::default_max_connections),
            handshake_timeout: secs(self.handshake_timeout),
            header_timeout: secs(self.header_timeout),
            body_timeout: secs(self.body_timeout),
            idle_timeout: secs(self.idle_timeout),
        }
    }
}

/// `ferry server …` administration (writes the data directory's database directly).
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Create the catalog (TUF repository): offline root and targets keys, online snapshot
    /// and timestamp keys, the first metadata.
    Init(ServerInitArgs),
    /// Print a one-time enrollment token for `ferry device init --enroll-token`.
    Token(ServerTokenArgs),
    /// List enrolled devices, or revoke one.
    Devices(ServerDevicesArgs),
    /// Open or close a build's signing window for a device class.
    SigningWindow(SigningWindowArgs),
    /// The personalization keys devices trust (signed into the catalog): list, rotate,
    /// retire.
    PersonalizationKey(PersonalizationKeyArgs),
    /// The director key devices accept signed decisions from (signed into the catalog):
    /// list, rotate (the old key is refused by devices once they see the new set).
    DirectorKey(DirectorKeyArgs),
    /// The fleet at a glance, from the event reports: versions, updates in progress and
    /// their phases, failures by code, rollbacks, silent devices.
    Fleet(ServerDataArgs),
    /// The event reports the server stored, oldest first.
    Events(ServerEventsArgs),
    /// Dashboard users: `ferry server user add NAME --role viewer|operator`.
    User(ServerUserArgs),
}

/// `ferry server user`.
#[derive(Debug, Args)]
pub struct ServerUserArgs {
    #[command(subcommand)]
    pub action: UserAction,
}

/// What to do with dashboard users.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add a dashboard user; the password is read from standard input (one line) or
    /// --password-file and stored as an argon2id hash.
    Add(UserAddArgs),
}

/// `ferry server user add`.
#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub server: ServerDataArgs,
    /// The user's name (letters, digits, '.', '_', '-').
    pub name: String,
    /// viewer (reads every page) or operator (also halts, resumes and pauses rollouts).
    #[arg(long, value_parser = ["viewer", "operator"])]
    pub role: String,
    /// Read the password from this file (its first line) instead of standard input.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Replace an existing user's password and role (ends their sessions).
    #[arg(long)]
    pub replace: bool,
}

/// `ferry server events`.
#[derive(Debug, Args)]
pub struct ServerEventsArgs {
    #[command(flatten)]
    pub server: ServerDataArgs,
    /// Only this device (16 hex digits).
    #[arg(long)]
    pub device: Option<String>,
    /// Only this update (UUID).
    #[arg(long)]
    pub update: Option<String>,
    /// Only this event (install_started, progress, installed, failed, committed, rolled_back, …).
    #[arg(long)]
    pub event: Option<String>,
    /// Only reports with this error code.
    #[arg(long)]
    pub code: Option<String>,
    /// Most reports shown.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

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

/// `ferry server personalization-key`.
#[derive(Debug, Args)]
pub struct PersonalizationKeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
    /// Server data directory.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The offline keys directory (targets key) that signs the catalog (default
    /// DATA/keys-offline); rotate and retire need it.
    #[arg(long, global = true)]
    pub keys: Option<PathBuf>,
    /// The replicas' shared store (`s3://…`, or FERRY_STORE): the catalog is taken from it
    /// before the change and given back after, so every replica serves the new set (each
    /// still needs the new private key file copied into its DATA/keys-online/).
    #[arg(long, global = true, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// The server database (`postgres://…`, or FERRY_DATABASE), opened with `--store`.
    #[arg(long, global = true, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `ferry server director-key`.
#[derive(Debug, Args)]
pub struct DirectorKeyArgs {
    #[command(subcommand)]
    pub action: DirectorKeyAction,
    /// Server data directory.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The offline keys directory (targets key) that signs the catalog (default
    /// DATA/keys-offline); rotate needs it.
    #[arg(long, global = true)]
    pub keys: Option<PathBuf>,
    /// The replicas' shared store (`s3://…`, or FERRY_STORE): the catalog is taken from it
    /// before the change and given back after, so every replica serves the new set (each
    /// still needs the new private key file copied into its DATA/keys-online/).
    #[arg(long, global = true, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// The server database (`postgres://…`, or FERRY_DATABASE), opened with `--store`.
    #[arg(long, global = true, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What to do with the director key.
#[derive(Debug, Subcommand)]
pub enum DirectorKeyAction {
    /// Show the director key set the catalog signs.
    List,
    /// Make a new key the director key and drop the old one from the set.
    Rotate,
}

/// What to do with the personalization keys.
#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Show the key set the catalog signs: its version, keys and the current one.
    List,
    /// Make a new key the signing key; the others stay trusted until retired (the overlap).
    Rotate,
    /// Stop trusting a key: devices refuse its tickets after their next scan.
    Retire {
        /// The key id (64 hex digits, as `list` shows it).
        key_id: String,
    },
}

/// A server data directory.
#[derive(Debug, Args)]
pub struct ServerDataArgs {
    /// Server data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas share one
    /// PostgreSQL; set FERRY_DATABASE to keep the password off the process list) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `ferry server token`.
#[derive(Debug, Args)]
pub struct ServerTokenArgs {
    #[command(flatten)]
    pub server: ServerDataArgs,
    /// Only this device id (16 hex digits) may enroll with the token.
    #[arg(long)]
    pub device: Option<ferry_types::DeviceId>,
    /// Only a device of this class may enroll with the token.
    #[arg(long)]
    pub class: Option<ferry_types::DeviceClass>,
    /// Re-enroll the --device that is already enrolled (or revoked): its new identity and
    /// credential replace the old, and a revocation is lifted.
    #[arg(long, requires = "device")]
    pub reenroll: bool,
}

/// `ferry server devices`.
#[derive(Debug, Args)]
pub struct ServerDevicesArgs {
    #[command(flatten)]
    pub server: ServerDataArgs,
    /// Revoke this device (16 hex digits): it gets no more tickets.
    #[arg(long)]
    pub revoke: Option<String>,
}

/// `ferry server signing-window`.
#[derive(Debug, Args)]
pub struct SigningWindowArgs {
    #[command(flatten)]
    pub server: ServerDataArgs,
    /// Device class.
    #[arg(long)]
    pub class: String,
    /// Build id (as `ferry publish` printed it).
    #[arg(long)]
    pub build: String,
    /// Open (sign it) or close (refuse with NOT_SIGNED).
    #[arg(value_enum)]
    pub action: WindowAction,
}

/// What to do with a signing window.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum WindowAction {
    /// Sign the build for the class.
    Open,
    /// Stop signing it.
    Close,
}

/// `ferry cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// The update server (or a parent cache) to fill misses from.
    #[arg(long)]
    pub upstream: String,
    /// The upstream's CA certificate to pin (the server's DIR/pki/ca.pem).
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// Where cached objects live.
    #[arg(long)]
    pub dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Disk budget in bytes; least recently used objects are evicted beyond it.
    #[arg(long, default_value_t = 20 << 30)]
    pub max_bytes: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `ferry server init`.
#[derive(Debug, Args)]
pub struct ServerInitArgs {
    /// Server data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas share one
    /// PostgreSQL; set FERRY_DATABASE to keep the password off the process list) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Where the offline root and targets keys go: outside DATA, on a machine or medium the
    /// server cannot reach; the serving process never needs them, `ferry publish --keys` does.
    #[arg(long, required_unless_present = "dev_keys")]
    pub keys: Option<PathBuf>,
    /// A development catalog: the offline keys in DATA/keys-offline (or --keys inside DATA);
    /// only `ferry server --dev-keys` serves it.
    #[arg(long)]
    pub dev_keys: bool,
}

/// `ferry publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Server data directory.
    #[arg(long)]
    pub data: PathBuf,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas share one
    /// PostgreSQL; set FERRY_DATABASE to keep the password off the process list) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Where artifacts and the served catalog are kept: `s3://BUCKET[/PREFIX]?endpoint=URL&region=R`
    /// (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the query), shared by
    /// replicas, or a directory (default DATA/artifacts). `ferry publish` and `ferry server`
    /// must name the same store.
    #[arg(long, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// The system image (a multiple of 4096 bytes).
    #[arg(long)]
    pub image: PathBuf,
    /// Its version, e.g. 26.3 or 1.0.2.
    #[arg(long)]
    pub version: Version,
    /// Device class it is for.
    #[arg(long)]
    pub class: String,
    /// Audience it opens to (repeat for several; customer releases reach every audience).
    #[arg(long = "audience", default_value = "customer")]
    pub audiences: Vec<String>,
    /// The offline keys directory (`ferry server init --keys DIR`; default DATA/keys-offline,
    /// where only a development catalog keeps them).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// Build id (default: version and image digest).
    #[arg(long)]
    pub build: Option<String>,
    /// zstd level.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Also build a tailored delta from this earlier version (repeatable).
    #[arg(long = "delta-from")]
    pub delta_from: Vec<Version>,
    /// Skip the chunked payload (chunk reuse for devices with no tailored delta): publish
    /// the full payload (and any deltas) only.
    #[arg(long)]
    pub no_chunks: bool,
    /// Print the release as JSON.
    #[arg(long)]
    pub json: bool,
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

/// `ferry bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Tickets per second and latency of POST /v1/personalize over HTTPS on loopback,
    /// against an in-process server with SQLite (every request a fresh nonce).
    Personalize(BenchPersonalizeArgs),
    /// Event reports per second and latency of POST /v1/events over HTTPS on loopback
    /// (batches of --batch reports, SQLite with fsync), against an in-process server.
    Events(BenchEventsArgs),
    /// The running agent's figures: `GET /v1/status` round trip (p50, p99) over its
    /// socket, and the time from a cancel to the download stopping.
    Agent(BenchAgentArgs),
    /// Real installs of a ≥ 1 GiB image under five network and disk scenarios, and the
    /// figures of honest progress from their progress logs, with a chart each
    /// (`bench/progress` runs it).
    Progress(BenchProgressArgs),
    /// A fleet simulator against a running server: thousands of devices in one process
    /// scanning, asking for tickets, reporting events and installing at the given rates, or
    /// all asking for a ticket at once (`--burst`); throughput, p50/p99 and errors by code.
    Fleet(BenchFleetArgs),
}

/// `ferry bench fleet`.
#[derive(Debug, Args)]
pub struct BenchFleetArgs {
    /// The server (or the load balancer in front of replicas), e.g. https://127.0.0.1:8443.
    #[arg(long)]
    pub server: String,
    /// The CA the devices pin (the server's DATA/pki/ca.pem).
    #[arg(long)]
    pub ca: PathBuf,
    /// The server's admin token file (DATA/admin-token): enrolls the devices --state lacks.
    #[arg(long)]
    pub admin_token: Option<PathBuf>,
    /// The simulated devices (identities and credentials) kept between runs.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Devices in the fleet.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Their device class (a release of it must be published, its signing window open).
    #[arg(long, default_value = "bench")]
    pub class: String,
    /// Seconds of sustained load (not with --burst).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Scans (timestamp refreshes) per second, all devices together.
    #[arg(long, default_value_t = 200.0)]
    pub rate_scans: f64,
    /// Tickets (personalizations) per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate_tickets: f64,
    /// Event reports per second (one report per batch, as a device sends each step).
    #[arg(long, default_value_t = 100.0)]
    pub rate_reports: f64,
    /// Installs (downloads of the newest payload, checked) per second.
    #[arg(long, default_value_t = 2.0)]
    pub rate_installs: f64,
    /// Every device asks for a ticket at once (the thundering herd after a release).
    #[arg(long)]
    pub burst: bool,
    /// Requests in flight at most (HTTPS connections the simulator opens).
    #[arg(long, default_value_t = 512)]
    pub connections: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ferry bench progress`.
#[derive(Debug, Args)]
pub struct BenchProgressArgs {
    /// Working directory (images, server data and devices are kept and reused; ~4 GB).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where the charts and figures.json go.
    #[arg(long, default_value = "docs/progress")]
    pub out: PathBuf,
    /// Image size, MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Scenarios to run, by letter (a: steady, b: rate drop, c: cut, d: slow disk, e: delta).
    #[arg(long, default_value = "abcde")]
    pub scenarios: String,
    /// The ferry binary the server and installs run (default: this one).
    #[arg(long)]
    pub ferry: Option<PathBuf>,
}

/// `ferry bench events`.
#[derive(Debug, Args)]
pub struct BenchEventsArgs {
    /// Directory for the server's data (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Concurrent connections (each sends one device's batches at a time).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Seconds to run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Enrolled devices the batches are spread over.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Reports per batch.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub batch: u64,
    /// Worker threads of the server's runtime.
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ferry bench agent`.
#[derive(Debug, Args)]
pub struct BenchAgentArgs {
    /// The device whose agent runs.
    #[arg(long, env = "FERRY_DEVICE")]
    pub device: PathBuf,
    /// Status requests, one after another.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Installs cancelled during their download (each resumes the one before).
    #[arg(long, default_value_t = 10)]
    pub cancels: usize,
    /// Milliseconds the download runs before each cancel.
    #[arg(long, default_value_t = 300)]
    pub cancel_after_ms: u64,
    /// The offer to install (default: the recommended one).
    #[arg(long)]
    pub label: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ferry bench personalize`.
#[derive(Debug, Args)]
pub struct BenchPersonalizeArgs {
    /// Directory for the server's data (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds to run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Enrolled devices the requests are spread over.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Worker threads of the server's runtime (the load generator uses the others).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ferry demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's server, images and device (default: ./ferry-demo).
    #[arg(long, default_value = "ferry-demo")]
    pub dir: PathBuf,
    /// Size of the generated images in MiB.
    #[arg(long, default_value_t = 64)]
    pub image_mib: u64,
    /// Leave the demo's server running afterwards (until Ctrl-C) and print the dashboard's
    /// address and how to sign in.
    #[arg(long)]
    pub keep_serving: bool,
    /// The demo server's database: an empty PostgreSQL database `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (or FERRY_DATABASE); default a SQLite file in the demo directory.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Where the demo server keeps artifacts and the served catalog: an empty bucket
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` (or FERRY_STORE); default a directory in
    /// the demo directory.
    #[arg(long, env = "FERRY_STORE")]
    pub store: Option<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Cli::command().debug_assert();
    }
}

/// `ferry rollout …` (writes the data directory's database directly, like `ferry server
/// devices`; the same actions are admin endpoints under `/v1/admin/rollouts`).
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub action: RolloutAction,
    /// Server data directory.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (replicas share one
    /// PostgreSQL; set FERRY_DATABASE to keep the password off the process list) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What to do with rollouts.
#[derive(Debug, Subcommand)]
pub enum RolloutAction {
    /// Start rolling release VERSION of CLASS out: no device gets a ticket for it before its
    /// wave opens.
    Create {
        /// Device class.
        #[arg(long)]
        class: String,
        /// The release's version.
        #[arg(long)]
        version: String,
        /// Only devices that last reported this audience (default: every device of the class).
        #[arg(long)]
        audience: Option<String>,
        /// Only devices matching every term: tenant:T, region:R, tag:X (or programme:X),
        /// audience:A, device:ID, e.g. tag:beta,region:eu (default: every device of the class).
        #[arg(long)]
        cohort: Option<String>,
        /// Cumulative PERCENT%@TIME waves ending at 100%, e.g. 1%@0,5%@4h,25%@1d,100%@3d.
        #[arg(long, default_value = "100%@0")]
        waves: String,
        /// After it (RFC 3339, or a time from now like 3d) devices install at their first
        /// allowed moment, the maintenance window overridden.
        #[arg(long)]
        deadline: Option<String>,
        /// How long a device may defer the release after its first deferral (e.g. 2d;
        /// default: up to the deadline).
        #[arg(long)]
        max_deferral: Option<String>,
        /// Open every wave at once and refuse deferrals (still signed, still halted by the
        /// halt rule).
        #[arg(long)]
        emergency: bool,
        /// Halt when a wave's failure rate is above this with 95 % confidence (Wilson).
        #[arg(long, default_value_t = 0.2)]
        threshold: f64,
        /// Fewest attempts in a wave before it may halt.
        #[arg(long, default_value_t = 3)]
        min_attempts: u64,
    },
    /// Every rollout, newest first.
    List,
    /// One rollout: its waves, their counters, its pauses and halts.
    Show {
        /// Rollout id.
        id: i64,
    },
    /// Stop opening waves and signing for the release; the schedule's clock stops.
    Pause {
        /// Rollout id.
        id: i64,
    },
    /// Continue a paused or halted rollout (after a halt, counting starts afresh).
    Resume {
        /// Rollout id.
        id: i64,
    },
    /// Stop the rollout now: no more tickets for the release.
    Halt {
        /// Rollout id.
        id: i64,
    },
    /// For each rollout of a device's class, the one reason it has or has not got the
    /// release.
    Explain {
        /// Device id (16 hex digits).
        device: ferry_types::DeviceId,
    },
}

/// `ferry entitlement …` (writes the data directory's database directly, like `ferry
/// rollout`; the same actions are admin endpoints under `/v1/admin/entitlements` and
/// `/v1/admin/devices/ID/tags`).
#[derive(Debug, Args)]
pub struct EntitlementArgs {
    #[command(subcommand)]
    pub action: EntitlementAction,
    /// Server data directory.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The server database: `postgres://USER:PASSWORD@HOST:PORT/DB` (or FERRY_DATABASE) or
    /// `sqlite://PATH`; default DATA/ferry.db.
    #[arg(long, global = true, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What to do with entitlements.
#[derive(Debug, Subcommand)]
pub enum EntitlementAction {
    /// Let the devices TO selects get release VERSION of CLASS; once a release has a
    /// grant, devices no grant selects are refused it (NOT_ENTITLED).
    Grant {
        /// Device class.
        #[arg(long)]
        class: String,
        /// The release's version, or * for every release of the class.
        #[arg(long)]
        version: String,
        /// The devices: tenant:T, region:R, tag:X (or programme:X), audience:A, device:ID,
        /// all terms must match (e.g. tenant:acme,region:eu), or all.
        #[arg(long)]
        to: String,
    },
    /// Revoke a grant: its devices are refused the release from their next scan.
    Revoke {
        /// Entitlement id.
        id: i64,
    },
    /// Every grant, newest first.
    List,
    /// Set an enrolled device's tenant, region and tags (what grants and cohorts select).
    SetTags {
        /// Device id (16 hex digits).
        device: ferry_types::DeviceId,
        /// Tenant ("" clears it).
        #[arg(long)]
        tenant: Option<String>,
        /// Region ("" clears it).
        #[arg(long)]
        region: Option<String>,
        /// Every tag, comma-separated (replaces the old ones; "" clears them).
        #[arg(long)]
        tags: Option<String>,
    },
    /// Show a device's tenant, region, tags and reported audience.
    Tags {
        /// Device id (16 hex digits).
        device: ferry_types::DeviceId,
    },
}
