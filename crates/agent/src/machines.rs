//! The agent's state machines, as tables (DESIGN §4): `scan_manager`, `scan[uuid]`,
//! `recovery_scan[uuid]`, `downloader[uuid]`, `controller[uuid]` and `update[uuid]`.
//! Every step of an update is an action of one of them; `ferry fsm dot NAME` prints
//! any of them and `ferry log replay` re-runs them over the journal.

use ferry_fsm::{Machine, MachineDef, machine};

/// Background and asked-for scans: one instance per device, it never ends.
pub const SCAN_MANAGER: MachineDef = machine! {
    name: "scan_manager",
    initial: IDLE,
    finals: [],
    failures: [Fail],
    exempt: [(IDLE, Fail)],
    rows: [
        IDLE     + Scan  => RunScan           -> SCANNING,
        SCANNING + Found => RecordScan        -> IDLE,
        SCANNING + Fail  => RecordScanFailure -> IDLE,
    ],
};

/// One scan: fetch the catalog, select the offers.
pub const SCAN: MachineDef = machine! {
    name: "scan",
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
};

/// Whether a recovery-system update is needed. Until the recovery component exists
/// its only path is "not needed".
pub const RECOVERY_SCAN: MachineDef = machine! {
    name: "recovery_scan",
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
};

/// One update's payload download, across attempts (a failed attempt resumes).
pub const DOWNLOADER: MachineDef = machine! {
    name: "downloader",
    initial: IDLE,
    finals: [DONE],
    failures: [Fail],
    exempt: [],
    rows: [
        IDLE      + Begin      => OpenStream     -> STREAMING,
        STREAMING + Checkpoint => RecordProgress -> STREAMING,
        STREAMING + Done       => Finish         -> DONE,
        IDLE      + Fail       => RecordFailure  -> FAILED,
        STREAMING + Fail       => RecordFailure  -> FAILED,
        FAILED    + Fail       => RecordFailure  -> FAILED,
        FAILED    + Begin      => OpenStream     -> STREAMING,
        STREAMING + Begin      => OpenStream     -> STREAMING,
    ],
};

/// The install itself; its states are the progress checkpoints of DESIGN §5.
/// PREFLIGHT_PERSONALIZE gets the ticket before a byte is downloaded.
/// After a crash the controller resumes through LOADING_PERSISTED.
pub const CONTROLLER: MachineDef = machine! {
    name: "controller",
    initial: ACCEPTED,
    finals: [COMPLETED],
    failures: [Fail],
    exempt: [],
    rows: [
        ACCEPTED           + Start         => StartUp        -> STARTUP,
        STARTUP            + Started       => LoadPersisted  -> LOADING_PERSISTED,
        LOADING_PERSISTED  + Fresh         => Ready          -> READY,
        LOADING_PERSISTED  + Resumable     => Ready          -> READY,
        LOADING_PERSISTED  + AlreadyStaged => Complete       -> COMPLETED,
        READY              + Go            => Personalize    -> PREFLIGHT_PERSONALIZE,
        PREFLIGHT_PERSONALIZE + Personalized => Download     -> DOWNLOADING_UPDATE,
        DOWNLOADING_UPDATE + Downloaded    => MarkDownloaded -> DOWNLOADED_UPDATE,
        DOWNLOADED_UPDATE  + Go            => Prepare        -> PREPARING_UPDATE,
        PREPARING_UPDATE   + Sealed        => Apply          -> PREPARED,
        PREPARED           + Applied       => Complete       -> COMPLETED,
        ACCEPTED           + Fail          => RecordFailure  -> FAILED,
        STARTUP            + Fail          => RecordFailure  -> FAILED,
        LOADING_PERSISTED  + Fail          => RecordFailure  -> FAILED,
        READY              + Fail          => RecordFailure  -> FAILED,
        PREFLIGHT_PERSONALIZE + Fail       => RecordFailure  -> FAILED,
        DOWNLOADING_UPDATE + Fail          => RecordFailure  -> FAILED,
        DOWNLOADED_UPDATE  + Fail          => RecordFailure  -> FAILED,
        PREPARING_UPDATE   + Fail          => RecordFailure  -> FAILED,
        PREPARED           + Fail          => RecordFailure  -> FAILED,
        FAILED             + Fail          => RecordFailure  -> FAILED,
        FAILED             + Start         => StartUp        -> STARTUP,
        STARTUP            + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        LOADING_PERSISTED  + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        READY              + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        PREFLIGHT_PERSONALIZE + Resume     => LoadPersisted  -> LOADING_PERSISTED,
        DOWNLOADING_UPDATE + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        DOWNLOADED_UPDATE  + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        PREPARING_UPDATE   + Resume        => LoadPersisted  -> LOADING_PERSISTED,
        PREPARED           + Resume        => LoadPersisted  -> LOADING_PERSISTED,
    ],
};

/// An update's life: chosen, installed (staged for restart), then committed at boot
/// or rolled back.
pub const UPDATE: MachineDef = machine! {
    name: "update",
    initial: SELECTED,
    finals: [COMMITTED, ROLLED_BACK],
    failures: [Fail],
    exempt: [],
    rows: [
        SELECTED   + Install    => RunController -> INSTALLING,
        INSTALLING + Installed  => AwaitRestart  -> STAGED,
        INSTALLING + Install    => RunController -> INSTALLING,
        STAGED     + Install    => RunController -> INSTALLING,
        STAGED     + Booted     => Commit        -> COMMITTED,
        STAGED     + BootFailed => RollBack      -> ROLLED_BACK,
        FAILED     + Install    => RunController -> INSTALLING,
        SELECTED   + Fail       => RecordFailure -> FAILED,
        INSTALLING + Fail       => RecordFailure -> FAILED,
        STAGED     + Fail       => RecordFailure -> FAILED,
        FAILED     + Fail       => RecordFailure -> FAILED,
    ],
};

/// Every machine's definition, in the order `ferry fsm` lists them.
pub const ALL: [&MachineDef; 6] = [
    &SCAN_MANAGER,
    &SCAN,
    &RECOVERY_SCAN,
    &DOWNLOADER,
    &CONTROLLER,
    &UPDATE,
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
}
