//! Flags of `ferry rollout` and `ferry entitlement` (who gets which release, and when).

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
