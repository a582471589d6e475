//! The agent's state machines, as tables (DESIGN §4): `scan_manager`, `scan[uuid]`,
//! `recovery_scan[uuid]`, `downloader[uuid]`, `controller[uuid]`, `update[uuid]` and
//! the daemon's `scheduler` and `health_watch[uuid]`.
//! Every step of an update is an action of one of them; `ferry fsm dot NAME` prints
//! any of them and `ferry log replay` re-runs them over the journal.

use ferry_fsm::{Machine, MachineDef, machine};

machine! {
    /// Background and asked-for scans: one instance per device, it never ends.
    pub const SCAN_MANAGER in scan_manager {
        name: "scan_manager",
        states: [IDLE, SCANNING],
        events: [Scan, Found, Fail],
        actions: [RunScan, RecordScan, RecordScanFailure],
        initial: IDLE,
        finals: [],
        failures: [Fail],
        exempt: [(IDLE, Fail)],
        rows: [
            IDLE     + Scan  => RunScan           -> SCANNING,
            SCANNING + Found => RecordScan        -> IDLE,
            SCANNING + Fail  => RecordScanFailure -> IDLE,
        ],
    }
}

machine! {
    /// One scan: fetch the catalog, select the offers.
    pub const SCAN in scan {
        name: "scan",
        states: [START, FETCHING, SELECTING, DONE, FAILED],
        events: [Refresh, Fetched, Selected, Fail],
        actions: [FetchCatalog, SelectOffers, Finish, RecordFailure],
        initial: START,
        finals: [DONE, FAILED],
        failures: [Fail],
        exempt: [],
        rows: [
            START     + Refresh  => FetchCatalog  -> FETCHING,
            FETCHING  + Fetched  => SelectOffers  -> SELECTING,
            SELECTING + Selected => Finish        -> DONE,
            START     + Fail     => RecordFailure -> FAILED,
            FETCHING  + Fail     => RecordFailure -> FAILED,
            SELECTING + Fail     => RecordFailure -> FAILED,
        ],
    }
}

machine! {
    /// Whether a recovery-system update is needed. Until the recovery component exists
    /// its only path is "not needed".
    pub const RECOVERY_SCAN in recovery_scan {
        name: "recovery_scan",
        states: [START, CHECKING, NOT_NEEDED, FAILED],
        events: [Check, NotNeeded, Fail],
        actions: [CheckRecovery, Finish, RecordFailure],
        initial: START,
        finals: [NOT_NEEDED, FAILED],
        failures: [Fail],
        exempt: [],
        rows: [
            START    + Check     => CheckRecovery -> CHECKING,
            CHECKING + NotNeeded => Finish        -> NOT_NEEDED,
            START    + Fail      => RecordFailure -> FAILED,
            CHECKING + Fail      => RecordFailure -> FAILED,
        ],
    }
}

machine! {
    /// One update's payload download, across attempts (a failed attempt resumes). Chunk
    /// reuse re-fetches a chunk that failed its digest once (Refetch), then assembles the
    /// image from the running slot and the downloaded chunks (ASSEMBLING). A cancelled or
    /// suspended download is PARKED with what it received kept.
    pub const DOWNLOADER in downloader {
        name: "downloader",
        states: [IDLE, STREAMING, ASSEMBLING, PARKED, DONE, FAILED],
        events: [Begin, Checkpoint, Refetch, Assemble, Done, Cancel, Fail],
        actions: [
            OpenStream, RecordProgress, RefetchChunk, AssembleImage, Finish, Park,
            RecordFailure,
        ],
        initial: IDLE,
        finals: [DONE],
        failures: [Fail],
        exempt: [],
        rows: [
            IDLE      + Begin      => OpenStream     -> STREAMING,
            STREAMING + Checkpoint => RecordProgress -> STREAMING,
            STREAMING + Refetch    => RefetchChunk   -> STREAMING,
            STREAMING + Assemble   => AssembleImage  -> ASSEMBLING,
            ASSEMBLING + Done      => Finish         -> DONE,
            ASSEMBLING + Fail      => RecordFailure  -> FAILED,
            ASSEMBLING + Begin     => OpenStream     -> STREAMING,
            STREAMING + Done       => Finish         -> DONE,
            STREAMING + Cancel     => Park           -> PARKED,
            PARKED    + Begin      => OpenStream     -> STREAMING,
            PARKED    + Fail       => RecordFailure  -> FAILED,
            IDLE      + Fail       => RecordFailure  -> FAILED,
            STREAMING + Fail       => RecordFailure  -> FAILED,
            FAILED    + Fail       => RecordFailure  -> FAILED,
            FAILED    + Begin      => OpenStream     -> STREAMING,
            STREAMING + Begin      => OpenStream     -> STREAMING,
        ],
    }
}

machine! {
    /// The install itself; its states are the progress checkpoints of DESIGN §5.
    /// PURGING sizes the install before anything is downloaded (purging the cache if
    /// short, then preallocating the slot); PREFLIGHT_PREREQUISITE checks power, network
    /// and space (`policy`) before a download and again before a staged update is
    /// applied; PREFLIGHT_PERSONALIZE gets the ticket before a byte is downloaded (or a
    /// fresh one for a staged update whose ticket is stale). A download-only run
    /// (`ferry download`) stops at PREPARED (Hold): the slot is written, verified and
    /// sealed but nothing boots it until an install applies it. A cancelled or suspended
    /// download is PARKED. After a crash the controller resumes through LOADING_PERSISTED.
    pub const CONTROLLER in controller {
        name: "controller",
        states: [
            ACCEPTED, STARTUP, LOADING_PERSISTED, PURGING, READY, PREFLIGHT_PREREQUISITE,
            PREFLIGHT_PERSONALIZE, DOWNLOADING_UPDATE, DOWNLOADED_UPDATE, PREPARING_UPDATE,
            PREPARED, PARKED, COMPLETED, FAILED,
        ],
        events: [
            Start, Started, Fresh, Resumable, AlreadyStaged, Prestaged, Sized, Go, Held,
            Stale, Personalized, Refreshed, Downloaded, Sealed, Applied, Cancel, Resume,
            Fail,
        ],
        actions: [
            StartUp, LoadPersisted, SizeAndPurge, Ready, CheckPrerequisites, Personalize,
            RefreshTicket, Download, MarkDownloaded, Prepare, Hold, Apply, Complete, Park,
            RecordFailure,
        ],
        initial: ACCEPTED,
        finals: [COMPLETED],
        failures: [Fail],
        exempt: [],
        rows: [
            ACCEPTED           + Start         => StartUp        -> STARTUP,
            STARTUP            + Started       => LoadPersisted  -> LOADING_PERSISTED,
            LOADING_PERSISTED  + Fresh         => SizeAndPurge   -> PURGING,
            LOADING_PERSISTED  + Resumable     => SizeAndPurge   -> PURGING,
            PURGING            + Sized         => Ready          -> READY,
            LOADING_PERSISTED  + AlreadyStaged => Complete       -> COMPLETED,
            LOADING_PERSISTED  + Prestaged     => CheckPrerequisites -> PREFLIGHT_PREREQUISITE,
            READY              + Go            => CheckPrerequisites -> PREFLIGHT_PREREQUISITE,
            PREFLIGHT_PREREQUISITE + Go        => Personalize    -> PREFLIGHT_PERSONALIZE,
            PREFLIGHT_PREREQUISITE + Held      => Hold           -> PREPARED,
            PREFLIGHT_PREREQUISITE + Prestaged => Apply          -> PREPARED,
            PREFLIGHT_PREREQUISITE + Stale     => RefreshTicket  -> PREFLIGHT_PERSONALIZE,
            PREFLIGHT_PERSONALIZE + Personalized => Download     -> DOWNLOADING_UPDATE,
            PREFLIGHT_PERSONALIZE + Refreshed  => Apply          -> PREPARED,
            DOWNLOADING_UPDATE + Downloaded    => MarkDownloaded -> DOWNLOADED_UPDATE,
            DOWNLOADING_UPDATE + Cancel        => Park           -> PARKED,
            DOWNLOADED_UPDATE  + Go            => Prepare        -> PREPARING_UPDATE,
            PREPARING_UPDATE   + Sealed        => Apply          -> PREPARED,
            PREPARING_UPDATE   + Held          => Hold           -> PREPARED,
            PREPARED           + Applied       => Complete       -> COMPLETED,
            ACCEPTED           + Fail          => RecordFailure  -> FAILED,
            STARTUP            + Fail          => RecordFailure  -> FAILED,
            LOADING_PERSISTED  + Fail          => RecordFailure  -> FAILED,
            PURGING            + Fail          => RecordFailure  -> FAILED,
            READY              + Fail          => RecordFailure  -> FAILED,
            PREFLIGHT_PREREQUISITE + Fail      => RecordFailure  -> FAILED,
            PREFLIGHT_PERSONALIZE + Fail       => RecordFailure  -> FAILED,
            DOWNLOADING_UPDATE + Fail          => RecordFailure  -> FAILED,
            DOWNLOADED_UPDATE  + Fail          => RecordFailure  -> FAILED,
            PREPARING_UPDATE   + Fail          => RecordFailure  -> FAILED,
            PREPARED           + Fail          => RecordFailure  -> FAILED,
            PARKED             + Fail          => RecordFailure  -> FAILED,
            FAILED             + Fail          => RecordFailure  -> FAILED,
            FAILED             + Start         => StartUp        -> STARTUP,
            STARTUP            + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            LOADING_PERSISTED  + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            PURGING            + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            READY              + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            PREFLIGHT_PREREQUISITE + Resume    => LoadPersisted  -> LOADING_PERSISTED,
            PREFLIGHT_PERSONALIZE + Resume     => LoadPersisted  -> LOADING_PERSISTED,
            DOWNLOADING_UPDATE + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            DOWNLOADED_UPDATE  + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            PREPARING_UPDATE   + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            PREPARED           + Resume        => LoadPersisted  -> LOADING_PERSISTED,
            PARKED             + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        ],
    }
}

machine! {
    /// An update's life: chosen, then either installed (staged for restart) and committed
    /// at boot or rolled back, or first downloaded only (PRESTAGING → PRESTAGED: written,
    /// verified and sealed, waiting for an install), parked by a cancel, or dropped when a
    /// newer release supersedes it or the server no longer signs it.
    pub const UPDATE in update {
        name: "update",
        states: [
            SELECTED, PRESTAGING, PRESTAGED, INSTALLING, PARKED, STAGED, COMMITTED,
            ROLLED_BACK, DROPPED, FAILED,
        ],
        events: [
            Install, Download, Prestaged, Installed, Cancel, Drop, Booted, BootFailed, Fail,
        ],
        actions: [
            RunController, AwaitInstall, AwaitRestart, Park, Discard, Commit, RollBack,
            RecordFailure,
        ],
        initial: SELECTED,
        finals: [COMMITTED, ROLLED_BACK, DROPPED],
        failures: [Fail],
        exempt: [],
        rows: [
            SELECTED   + Install    => RunController -> INSTALLING,
            SELECTED   + Download   => RunController -> PRESTAGING,
            PRESTAGING + Prestaged  => AwaitInstall  -> PRESTAGED,
            PRESTAGING + Download   => RunController -> PRESTAGING,
            PRESTAGING + Install    => RunController -> INSTALLING,
            PRESTAGING + Cancel     => Park          -> PARKED,
            PRESTAGED  + Download   => RunController -> PRESTAGING,
            PRESTAGED  + Install    => RunController -> INSTALLING,
            PRESTAGED  + Drop       => Discard       -> DROPPED,
            INSTALLING + Installed  => AwaitRestart  -> STAGED,
            INSTALLING + Install    => RunController -> INSTALLING,
            INSTALLING + Cancel     => Park          -> PARKED,
            INSTALLING + Drop       => Discard       -> DROPPED,
            PARKED     + Install    => RunController -> INSTALLING,
            PARKED     + Download   => RunController -> PRESTAGING,
            PARKED     + Drop       => Discard       -> DROPPED,
            STAGED     + Install    => RunController -> INSTALLING,
            STAGED     + Booted     => Commit        -> COMMITTED,
            STAGED     + BootFailed => RollBack      -> ROLLED_BACK,
            FAILED     + Install    => RunController -> INSTALLING,
            FAILED     + Download   => RunController -> PRESTAGING,
            SELECTED   + Fail       => RecordFailure -> FAILED,
            PRESTAGING + Fail       => RecordFailure -> FAILED,
            PRESTAGED  + Fail       => RecordFailure -> FAILED,
            INSTALLING + Fail       => RecordFailure -> FAILED,
            PARKED     + Fail       => RecordFailure -> FAILED,
            STAGED     + Fail       => RecordFailure -> FAILED,
            FAILED     + Fail       => RecordFailure -> FAILED,
        ],
    }
}

machine! {
    /// The agent daemon's own decisions (`ferry agent`), one instance per device: each
    /// start, each offer it holds back and why (policy, window, precondition), each
    /// download, install or restart it begins on its own, suspension, and each reload of
    /// `config.toml`.
    pub const SCHEDULER in scheduler {
        name: "scheduler",
        states: [RUNNING, SUSPENDED],
        events: [Start, Hold, Act, Suspend, Resume, Reload],
        actions: [Schedule, RecordHold, RunJob, Pause, Release],
        initial: RUNNING,
        finals: [],
        failures: [],
        exempt: [],
        rows: [
            RUNNING   + Start   => Schedule   -> RUNNING,
            SUSPENDED + Start   => Schedule   -> SUSPENDED,
            RUNNING   + Hold    => RecordHold -> RUNNING,
            RUNNING   + Act     => RunJob     -> RUNNING,
            RUNNING   + Suspend => Pause      -> SUSPENDED,
            SUSPENDED + Resume  => Release    -> RUNNING,
            RUNNING   + Reload  => Schedule   -> RUNNING,
            SUSPENDED + Reload  => Schedule   -> SUSPENDED,
        ],
    }
}

machine! {
    /// The post-commit health watch of one update (`health_watch[uuid]`): from the commit
    /// the daemon runs the device's health checks every `post_commit_check_every` until
    /// `post_commit_watch` has passed (Pass, silent) or one fails (Unhealthy, reported as
    /// `health_failed` with `HEALTH_WATCH_FAILED`). Its deadline is in
    /// `boot/health-watch.json` ([`crate::boot::watch`]), so a restart continues it.
    pub const HEALTH_WATCH in health_watch {
        name: "health_watch",
        states: [IDLE, WATCHING, PASSED, UNHEALTHY],
        events: [Begin, Pass, Unhealthy],
        actions: [RunChecks, EndWatch, ReportFailure],
        initial: IDLE,
        finals: [PASSED, UNHEALTHY],
        failures: [],
        exempt: [],
        rows: [
            IDLE     + Begin     => RunChecks     -> WATCHING,
            WATCHING + Pass      => EndWatch      -> PASSED,
            WATCHING + Unhealthy => ReportFailure -> UNHEALTHY,
        ],
    }
}

/// Every machine's definition, in the order `ferry fsm` lists them.
pub const ALL: [&MachineDef; 8] = [
    &SCAN_MANAGER,
    &SCAN,
    &RECOVERY_SCAN,
    &DOWNLOADER,
    &CONTROLLER,
    &UPDATE,
    &SCHEDULER,
    &HEALTH_WATCH,
];

/// Every machine, checked.
pub fn all() -> Result<Vec<Machine>, ferry_fsm::TableError> {
    ALL.iter().map(|def| Machine::new(def)).collect()
}

/// One machine by name.
pub fn by_name(name: &str) -> Option<Machine> {
    ALL.iter()
        .find(|d| d.name == name)
        .and_then(|d| Machine::new(d).ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_table_passes_its_checks() {
        for def in super::ALL {
            let defects = ferry_fsm::Machine::check(def);
            assert!(defects.is_empty(), "{}: {defects:?}", def.name);
        }
    }

    #[test]
    fn every_declared_name_is_in_its_table() {
        use ferry_fsm::unused_names;
        let unused = [
            unused_names::<super::scan_manager::Names>(),
            unused_names::<super::scan::Names>(),
            unused_names::<super::recovery_scan::Names>(),
            unused_names::<super::downloader::Names>(),
            unused_names::<super::controller::Names>(),
            unused_names::<super::update::Names>(),
            unused_names::<super::scheduler::Names>(),
            unused_names::<super::health_watch::Names>(),
        ];
        assert!(unused.iter().all(Vec::is_empty), "{unused:?}");
    }
}
