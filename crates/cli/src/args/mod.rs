//! Every flag of the `ferry` command, parsed and validated; nothing runs here. One file a
//! command family; this one holds the top-level command.

mod bench;
mod device;
mod diagnose;
mod rollout;
mod server;

pub use bench::*;
pub use device::*;
pub use diagnose::*;
pub use rollout::*;
pub use server::*;

use clap::{Parser, Subcommand};

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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        super::Cli::command().debug_assert();
    }
}
