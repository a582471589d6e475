//! Flags of the server-side commands: `server` (run and administer), `publish`, `cache`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use ferry_types::Version;

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
    /// connection stays open (HTTP/2: a connection with no open stream this long is sent a
    /// GOAWAY, and dropped one more such time later).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds a client has to send a whole request body.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Seconds without a byte moving either way after which a connection is closed (HTTP/2:
    /// pings every half of it; a peer that does not answer within the other half is dropped).
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

/// Where a key-set command finds the catalog it changes (personalization and director keys).
#[derive(Debug, Args)]
pub struct KeySetArgs {
    /// Server data directory.
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// The offline keys directory (targets key) that signs the catalog (default
    /// DATA/keys-offline); every change needs it.
    #[arg(long, global = true)]
    pub keys: Option<PathBuf>,
    /// The replicas' shared store (`s3://…`, or FERRY_STORE): the catalog is taken from it
    /// before the change and given back after, so every replica serves the new set (each
    /// takes the new private key from the store, sealed).
    #[arg(long, global = true, env = "FERRY_STORE")]
    pub store: Option<String>,
    /// The server database (`postgres://…`, or FERRY_DATABASE), opened with `--store`.
    #[arg(long, global = true, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `ferry server personalization-key`.
#[derive(Debug, Args)]
pub struct PersonalizationKeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
    #[command(flatten)]
    pub set: KeySetArgs,
}

/// `ferry server director-key`.
#[derive(Debug, Args)]
pub struct DirectorKeyArgs {
    #[command(subcommand)]
    pub action: DirectorKeyAction,
    #[command(flatten)]
    pub set: KeySetArgs,
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
    /// The tenant the device gets at enrollment (what grants and cohorts select; as
    /// `ferry entitlement set-tags` would set it).
    #[arg(long)]
    pub tenant: Option<String>,
    /// The region the device gets at enrollment.
    #[arg(long)]
    pub region: Option<String>,
    /// The tags the device gets at enrollment, comma-separated.
    #[arg(long)]
    pub tags: Option<String>,
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
