//! Which transitions make a report, and what it says. [`Reporter::before_fire`] is called
//! by the journal's `fire` for every transition, after the fault-injection points and
//! before the engine makes the new state durable: a report is on disk in the outbox
//! before the step it reports counts as done (a crash between the two repeats the
//! transition, and its report, with a new sequence number).
//!
//! The report's facts come from durable device state only: power and storage
//! ([`crate::facts`]), the running slot and version (boot control, slot metadata), the
//! receipt of an installed update, the install record of one in progress, and the
//! journal's records of the update (phase durations, the payload tried first, the
//! target version).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_boot::Slot;
use ferry_events::{
    ErrorReport, EventKind, EventReport, EventResult, FallbackReport, Outbox, PayloadReport,
    PhaseDuration, ProgressReport, Transition, UpdateType,
};
use ferry_fsm::{Name, Store};
use ferry_types::{Diagnose, Identity, PayloadKind, Report, Version};
use serde::Deserialize;
use serde_json::Value;

use crate::AgentError;
use crate::device::{Config, Device, Receipt, SlotInfo};
use crate::layout::Layout;
use crate::machines::{controller, downloader, health_watch, update};
use crate::progress::{Progress, ProgressSink};

/// The least time between two queued progress samples of one phase.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Makes and queues the reports of one device (cheap to clone; one per open journal).
#[derive(Debug, Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    outbox: Arc<Mutex<Outbox>>,
    dir: PathBuf,
    identity: Identity,
    config: Config,
    /// Updates whose failure this process already reported: an install that fails fires
    /// `Fail` on the downloader, the controller and the update; the first, the most
    /// precise, is the one reported.
    failure_reported: Mutex<HashSet<String>>,
    /// When each (update, phase) last queued a progress sample.
    last_progress: Mutex<HashMap<(uuid::Uuid, &'static str), Instant>>,
}

/// What a transition is reported as.
struct Kind {
    event: EventKind,
    result: EventResult,
}

impl Reporter {
    /// The reporter of `device`, queueing into its outbox.
    pub fn for_device(device: &Device) -> Reporter {
        Reporter {
            inner: Arc::new(Inner {
                outbox: device.outbox.clone(),
                dir: device.dir.clone(),
                identity: device.identity.clone(),
                config: device.config.clone(),
                failure_reported: Mutex::new(HashSet::new()),
                last_progress: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Queues the report of the transition `machine[id]`: `from` + `event` → `to` with
    /// `data`, if the transition is one that is reported (see [`kind_of`]).
    #[allow(clippy::too_many_arguments)]
    pub fn before_fire(
        &self,
        store: &Store,
        machine: &'static str,
        id: &str,
        from: &'static str,
        event: &'static str,
        to: &'static str,
        data: &Value,
    ) -> Result<(), AgentError> {
        let Some(kind) = kind_of(machine, from, event, data) else {
            return Ok(());
        };
        if kind.event == EventKind::Failed {
            let mut reported = lock(&self.inner.failure_reported);
            if !reported.insert(id.to_owned()) {
                return Ok(());
            }
        }
        if kind.event == EventKind::InstallStarted {
            lock(&self.inner.failure_reported).remove(id);
        }
        let mut report = self.base(kind.event, kind.result);
        report.uuid = id.parse().ok();
        report.transition = Some(Transition {
            machine: machine.to_owned(),
            from: from.to_owned(),
            event: event.to_owned(),
            to: to.to_owned(),
        });
        let error: Option<Report> = data
            .get("error")
            .and_then(|e| serde_json::from_value(e.clone()).ok());
        if matches!(
            kind.event,
            EventKind::Failed | EventKind::RolledBack | EventKind::HealthFailed
        ) {
            report.error = error.as_ref().map(|e| ErrorReport {
                code: e.code.clone(),
                cause: e.cause.clone(),
                fix: e.fix.clone(),
                machine: Some(machine.to_owned()),
                state: Some(from.to_owned()),
            });
        }
        if kind.event == EventKind::PayloadFallback
            && let (Some(e), Some(from)) = (&error, payload_of(data))
        {
            report.fallback = Some(FallbackReport {
                from,
                code: e.code.clone(),
                cause: e.cause.clone(),
            });
        }
        match kind.event {
            EventKind::Committed => report.boot_counter_rolled_back = Some(false),
            EventKind::RolledBack => {
                report.boot_counter_rolled_back = Some(
                    error
                        .as_ref()
                        .is_some_and(|e| e.code == ferry_boot::BOOT_TRIES_EXHAUSTED),
                )
            }
            _ => {}
        }
        let history = report
            .uuid
            .map(|uuid| History::read(store, &uuid.to_string()))
            .unwrap_or_default();
        report.phases = history.phases(Utc::now());
        report.preferred_type = history.first_payload;
        report.target_os_version = data
            .get("version")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .or(history.target);
        self.add_payload(&mut report, kind.event, data);
        // From the version the update started from: after the commit the running version
        // is already the target.
        if let (Some(base), Some(target)) =
            (&report.current_base_os_version, &report.target_os_version)
        {
            report.update_type = Some(UpdateType::between(base, target));
        }
        lock(&self.inner.outbox).append(report)?;
        Ok(())
    }

    /// Queues the doctor's result (terminal: never dropped): success when no check
    /// failed, else a failure with the one cause it named (check, code, cause, fix).
    pub fn doctor_result(
        &self,
        ok: bool,
        cause: Option<(&str, &Report)>,
    ) -> Result<(), AgentError> {
        let result = if ok {
            EventResult::Success
        } else {
            EventResult::Failure
        };
        let mut report = self.base(EventKind::DoctorResult, result);
        report.error = cause.map(|(check, cause)| ErrorReport {
            code: cause.code.clone(),
            cause: cause.cause.clone(),
            fix: cause.fix.clone(),
            machine: Some("doctor".to_owned()),
            state: Some(check.to_owned()),
        });
        lock(&self.inner.outbox).append(report)?;
        Ok(())
    }

    /// Queues a progress sample of `update` if its phase has none from the last
    /// [`PROGRESS_EVERY`] (the outbox keeps the latest per phase anyway).
    pub fn progress(&self, update: uuid::Uuid, progress: &Progress) -> Result<(), AgentError> {
        if progress.total == 0 {
            return Ok(()); // a checkpoint without measured work: its transition reports it
        }
        {
            let mut last = lock(&self.inner.last_progress);
            let now = Instant::now();
            let key = (update, progress.state);
            if last
                .get(&key)
                .is_some_and(|at| now.duration_since(*at) < PROGRESS_EVERY)
            {
                return Ok(());
            }
            last.insert(key, now);
        }
        let mut report = self.base(EventKind::Progress, EventResult::InProgress);
        report.uuid = Some(update);
        report.progress = Some(ProgressReport {
            phase: progress.state.to_owned(),
            percent: progress.percent.clamp(0.0, 100.0),
            done: progress.done,
            total: progress.total,
            rate_bytes_per_sec: if progress.rate.is_finite() {
                progress.rate
            } else {
                0.0
            },
            eta_secs: progress
                .eta_secs
                .filter(|eta| eta.is_finite() && *eta >= 0.0),
        });
        lock(&self.inner.outbox).append(report)?;
        Ok(())
    }

    /// The fields every report has: the device, its power and storage, what it runs.
    fn base(&self, event: EventKind, result: EventResult) -> EventReport {
        let inner = &self.inner;
        let layout = Layout::new(&inner.dir);
        let slot_a = layout.resolve(&inner.config.slots.a);
        let facts = crate::facts::read(&inner.dir, &slot_a, &layout.simulated_facts());
        let running = running(&layout, &inner.config);
        let version = running
            .as_ref()
            .ok()
            .and_then(|(_, info)| info.as_ref())
            .map(|i| i.version.clone());
        let mut report = EventReport::new(&inner.identity, event, result);
        report.audience_type = inner.config.audience.clone();
        report.core_version = env!("CARGO_PKG_VERSION").to_owned();
        report.current_os_version = version.clone();
        report.current_base_os_version = version;
        report.current_slot = running.as_ref().ok().map(|(slot, _)| *slot);
        match facts {
            Ok(f) => {
                report.battery_level = f.power.battery_level;
                report.battery_is_charging = f.power.battery_charging;
                report.on_ac_power = f.power.on_ac;
                report.low_power_mode = f.power.low_power_mode;
                report.metered_network = f.metered_network;
                report.data_fs_capacity = f.data_fs.capacity;
                report.data_fs_free = f.data_fs.free;
                report.system_fs_capacity = f.system_fs.capacity;
                report.system_fs_free = f.system_fs.free;
                report.storage_capacity = if f.data_fs.fs_id == f.system_fs.fs_id {
                    f.data_fs.capacity
                } else {
                    f.data_fs.capacity.saturating_add(f.system_fs.capacity)
                };
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "an event report goes without the device's facts");
                report.facts_error = Some(e.code().to_owned());
            }
        }
        if let Err(e) = &running {
            tracing::warn!(code = e.code(), error = %e, "an event report goes without the running version");
        }
        report
    }

    /// The payload and its bytes: from the receipt once installed (its name is in the
    /// transition's data), else from the install record of the install in progress.
    fn add_payload(&self, report: &mut EventReport, event: EventKind, data: &Value) {
        let layout = Layout::new(&self.inner.dir);
        let receipt = data
            .get("receipt")
            .and_then(Value::as_str)
            .filter(|name| crate::layout::is_receipt_name(name))
            .and_then(|name| crate::device::read_json::<Receipt>(&layout.receipt(name)).ok());
        if let Some(r) = receipt {
            report.payload = Some(PayloadReport {
                kind: r.payload_kind,
                bytes_downloaded: r.bytes_downloaded,
                bytes_reused: r.bytes_reused,
                image_size: Some(r.image_size),
            });
            if let (Some(fallback), Some(from)) = (&r.fallback, r.fallback_from) {
                report.fallback = Some(FallbackReport {
                    from,
                    code: fallback.code.clone(),
                    cause: fallback.cause.clone(),
                });
            }
            report.target_os_version = Some(r.version);
            if report.current_os_version.as_ref() == report.target_os_version.as_ref()
                && matches!(event, EventKind::Committed | EventKind::HealthFailed)
            {
                // After the commit the running version is the new one; the update came from
                // the old.
                report.current_base_os_version = r.from_version.clone();
            }
            return;
        }
        let Ok(record) = crate::device::read_json::<RecordView>(&layout.install_record()) else {
            return;
        };
        if report.uuid.is_some_and(|uuid| uuid != record.update_id) {
            return;
        }
        let kind = match event {
            EventKind::DownloadStarted => payload_of(data).unwrap_or(record.payload_kind),
            _ => record.payload_kind,
        };
        report.payload = Some(PayloadReport {
            kind,
            bytes_downloaded: record.bytes_downloaded,
            bytes_reused: record.bytes_reused,
            image_size: None,
        });
        report.target_os_version.get_or_insert(record.version);
        if report.fallback.is_none()
            && let (Some(fallback), Some(from)) = (record.fallback, record.fallback_from)
        {
            report.fallback = Some(FallbackReport {
                from,
                code: fallback.code,
                cause: fallback.cause,
            });
        }
    }
}

/// A progress sink that also queues progress samples of one update (at most one per
/// phase every [`PROGRESS_EVERY`]) before passing each report on.
pub struct Sampled<'a> {
    /// Where progress goes too (the terminal, a test).
    pub inner: &'a dyn ProgressSink,
    /// The reporter that queues the samples.
    pub reporter: Reporter,
    /// The update.
    pub update: uuid::Uuid,
}

impl ProgressSink for Sampled<'_> {
    fn report(&self, progress: &Progress) {
        if let Err(e) = self.reporter.progress(self.update, progress) {
            // A lost sample costs the fleet one point of a bar; the install goes on.
            tracing::warn!(code = e.code(), error = %e, "a progress sample was not queued");
        }
        self.inner.report(progress);
    }
}

/// Which transitions are reported, and how: the table of DESIGN §6's "major steps",
/// written through the machines' typed names.
fn kind_of(machine: &str, from: &str, event: &str, data: &Value) -> Option<Kind> {
    let kind = |event, result| Some(Kind { event, result });
    use EventResult::{Failure, InProgress, Success};
    if machine == update::DEF.name {
        match update::Event::from_name(event)? {
            update::Event::Install | update::Event::Download => {
                kind(EventKind::InstallStarted, InProgress)
            }
            update::Event::Prestaged => kind(EventKind::Prestaged, Success),
            update::Event::Cancel => kind(EventKind::Parked, InProgress),
            update::Event::Drop => kind(EventKind::Dropped, Failure),
            update::Event::Installed => kind(EventKind::Installed, Success),
            update::Event::Booted => kind(EventKind::Committed, Success),
            update::Event::BootFailed => kind(EventKind::RolledBack, Failure),
            update::Event::Fail if from != update::State::FAILED.name() => {
                kind(EventKind::Failed, Failure)
            }
            update::Event::Fail => None,
        }
    } else if machine == controller::DEF.name {
        match controller::Event::from_name(event)? {
            controller::Event::Personalized => kind(EventKind::Personalized, Success),
            controller::Event::Downloaded => kind(EventKind::Downloaded, Success),
            controller::Event::Sealed => kind(EventKind::Prepared, Success),
            controller::Event::Fail if from != controller::State::FAILED.name() => {
                kind(EventKind::Failed, Failure)
            }
            _ => None,
        }
    } else if machine == health_watch::DEF.name {
        match health_watch::Event::from_name(event)? {
            health_watch::Event::Unhealthy => kind(EventKind::HealthFailed, Failure),
            health_watch::Event::Begin | health_watch::Event::Pass => None,
        }
    } else if machine == downloader::DEF.name {
        match downloader::Event::from_name(event)? {
            downloader::Event::Begin => kind(EventKind::DownloadStarted, InProgress),
            downloader::Event::Fail if data.get("fallback").is_some_and(|f| !f.is_null()) => {
                kind(EventKind::PayloadFallback, InProgress)
            }
            downloader::Event::Fail if from != downloader::State::FAILED.name() => {
                kind(EventKind::Failed, Failure)
            }
            _ => None,
        }
    } else {
        None
    }
}

/// The `payload` member of a downloader transition's data.
fn payload_of(data: &Value) -> Option<PayloadKind> {
    data.get("payload")
        .and_then(Value::as_str)
        .and_then(|p| p.parse().ok())
}

/// What the journal says about one update: when it entered each controller phase, the
/// payload it tried first, the version it installs.
#[derive(Debug, Default)]
struct History {
    /// Controller transitions: (time, state entered).
    entered: Vec<(DateTime<Utc>, String)>,
    first_payload: Option<PayloadKind>,
    target: Option<Version>,
}

impl History {
    fn read(store: &Store, id: &str) -> History {
        let records = match store.read_journal() {
            Ok(read) => read.records,
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "an event report goes without phase durations");
                return History::default();
            }
        };
        let mut history = History::default();
        for record in records.iter().filter(|r| r.id == id) {
            if record.fsm == controller::DEF.name {
                history.entered.push((record.t, record.next.clone()));
            } else if record.fsm == downloader::DEF.name
                && record.e == downloader::Event::Begin.name()
                && history.first_payload.is_none()
            {
                history.first_payload = payload_of(&record.data);
            } else if record.fsm == update::DEF.name && record.e == update::Event::Install.name() {
                history.target = record
                    .data
                    .get("version")
                    .and_then(|v| serde_json::from_value(v.clone()).ok());
            }
        }
        history
    }

    /// Seconds in each controller phase, in the order first entered; the phase it is in
    /// counts until `now`, unless it is where the install ended (COMPLETED, FAILED).
    fn phases(&self, now: DateTime<Utc>) -> Vec<PhaseDuration> {
        let ended = [
            controller::State::COMPLETED.name(),
            controller::State::FAILED.name(),
        ];
        let mut order: Vec<String> = Vec::new();
        let mut secs: BTreeMap<String, f64> = BTreeMap::new();
        for (idx, (at, state)) in self.entered.iter().enumerate() {
            let until = match self.entered.get(idx + 1) {
                Some((next, _)) => *next,
                None if ended.contains(&state.as_str()) => continue,
                None => now,
            };
            let spent = (until - *at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6;
            if !secs.contains_key(state) {
                order.push(state.clone());
            }
            *secs.entry(state.clone()).or_default() += spent;
        }
        order
            .into_iter()
            .take(ferry_events::report::MAX_PHASES)
            .map(|phase| PhaseDuration {
                secs: secs.get(&phase).copied().unwrap_or(0.0),
                phase,
            })
            .collect()
    }
}

/// The fields of the install record (`cache/install.json`) a report carries.
#[derive(Debug, Deserialize)]
struct RecordView {
    update_id: uuid::Uuid,
    version: Version,
    #[serde(default)]
    bytes_downloaded: u64,
    #[serde(default)]
    bytes_reused: u64,
    #[serde(default = "full")]
    payload_kind: PayloadKind,
    #[serde(default)]
    fallback: Option<Report>,
    #[serde(default)]
    fallback_from: Option<PayloadKind>,
}

fn full() -> PayloadKind {
    PayloadKind::Full
}

/// The running slot and what it holds, from boot control and the slot's metadata.
fn running(layout: &Layout, config: &Config) -> Result<(Slot, Option<SlotInfo>), AgentError> {
    let slot = ferry_boot::open(&config.boot, &layout.boot_dir())
        .load()?
        .primary();
    let path = layout.slot_info(slot);
    let info = path
        .exists()
        .then(|| crate::device::read_json::<SlotInfo>(&path))
        .transpose()?;
    Ok((slot, info))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
