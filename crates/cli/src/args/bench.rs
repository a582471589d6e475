//! Flags of `ferry bench …` and `ferry demo` (measuring and showing the product).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `ferry bench …`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Tickets per second and latency of POST /v1/personalize over HTTPS on loopback,
    /// against an in-process server with SQLite, or --database/--store (every request a
    /// fresh nonce).
    Personalize(BenchPersonalizeArgs),
    /// Event reports per second and latency of POST /v1/events over HTTPS on loopback
    /// (batches of --batch reports, SQLite with fsync, or --database/--store), against an
    /// in-process server.
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
    /// Concurrent connections (each sends one device's batches at a time).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Reports per batch.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub batch: u64,
    #[command(flatten)]
    pub load: LoadArgs,
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
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The server and the run of a load benchmark (`bench personalize`, `bench events`).
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Directory for the server's data (default: a temporary directory).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Seconds to run (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Enrolled devices the requests are spread over.
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Worker threads of the server's runtime (the load generator uses the others).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// The server's database: an empty PostgreSQL database `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (or FERRY_DATABASE; one a run with the same --dir filled may be reused); default a
    /// SQLite file in the data directory.
    #[arg(long, env = "FERRY_DATABASE")]
    pub database: Option<String>,
    /// Where the server keeps artifacts and the served catalog: an empty bucket
    /// `s3://BUCKET[/PREFIX]?endpoint=URL&region=R` (or FERRY_STORE); default a directory in
    /// the data directory.
    #[arg(long, env = "FERRY_STORE")]
    pub store: Option<String>,
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
