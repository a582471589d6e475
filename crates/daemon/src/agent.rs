//! The daemon itself (`ferry agent`): it holds the device (its lock and its one journal),
//! runs one job at a time (a scan, a download, an install, a restart) whether a client
//! asked for it or its schedule did, and the schedule: a background scan every
//! `check_interval_secs` with jitter and back-off, then what [`crate::schedule::decide`]
//! says for the offered update. Each decision that changes, and each job it starts on its
//! own, is a transition of the `scheduler` machine. At start it does what a booted
//! system does (`ferry_agent::boot::reboot::check_booted`): a slot the bootloader is
//! trying is checked and committed, or abandoned. `config.toml` is read again on
//! [`Agent::reload`] (SIGHUP, `POST /v1/reload`); a job keeps the config it started with.
//! Queued event reports are delivered on each wake of the schedule once the outbox's
//! back-off allows.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_agent::device::Device;
use ferry_agent::install::{self, Mode, Options};
use ferry_agent::journal::{Instance, Journal};
use ferry_agent::machines::scheduler;
use ferry_agent::offer::Offer;
use ferry_agent::policy::Restart;
use ferry_agent::stop::{StopReason, StopToken};
use ferry_types::Diagnose;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::error::DaemonError;
use crate::events::Hub;
pub use crate::explain::{explain, waiting_sample};
use crate::schedule::{self, Hold, Next};
use crate::window;

/// The longest one delivery round of event reports may take before the schedule goes on.
const DELIVERY_ROUND: Duration = Duration::from_secs(20);

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Scan the catalog.
    Scan,
    /// Stage an update.
    Download,
    /// Install an update (applying it if staged).
    Install,
    /// Restart into the installed update, as `[policy]` says (a command, or simulated).
    Restart,
    /// The simulated restart a client asked for (`ferry reboot`).
    Reboot,
    /// Every full image for the device (`ferry list-full`): a catalog refresh.
    #[serde(rename = "list_full")]
    ListFull,
}

/// A job: what, for which label, and whether a client asked for it.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// What.
    pub kind: JobKind,
    /// The offer's label (`None`: the recommended one).
    pub label: Option<String>,
    /// A client asked (else the schedule started it).
    pub asked: bool,
    /// A [`JobKind::Reboot`] whose new system crashes before its boot check
    /// (`ferry reboot --simulate-crash`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulate_crash: bool,
}

impl Job {
    /// A job a client asked for.
    pub fn asked(kind: JobKind, label: Option<String>) -> Job {
        Job {
            kind,
            label,
            asked: true,
            simulate_crash: false,
        }
    }

    /// A job the schedule starts on its own.
    pub fn scheduled(kind: JobKind, label: Option<String>) -> Job {
        Job {
            asked: false,
            ..Job::asked(kind, label)
        }
    }
}

/// The job running now.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    /// The job.
    #[serde(flatten)]
    pub job: Job,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// What `GET /v1/status` adds to the device's status: the agent's own state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentState {
    /// The daemon's process id.
    pub pid: u32,
    /// Suspended (`ferry agent suspend`).
    pub suspended: bool,
    /// The job running now.
    pub job: Option<Running>,
    /// When the next background scan is due.
    pub next_scan: Option<DateTime<Utc>>,
    /// Background scans that failed in a row.
    pub scan_failures: u32,
    /// The offers of the last scan, each with why it is not being installed now.
    pub offers: Vec<OfferState>,
}

/// An offer and why it is not being installed now (`None`: it is, or is about to be).
#[derive(Debug, Clone, Serialize)]
pub struct OfferState {
    /// The offer.
    #[serde(flatten)]
    pub offer: Offer,
    /// What the agent does next with it.
    pub next: Next,
    /// Why not more.
    pub why_not_now: Option<Hold>,
}

/// The daemon's shared state.
pub struct Agent {
    /// The device, held (lock) for the daemon's life; replaced by a reload (a job keeps
    /// the one it started with).
    device: RwLock<Arc<Device>>,
    /// The journal: held by the job running (one at a time; the lock queues the rest).
    journal: tokio::sync::Mutex<Journal>,
    /// Where events go.
    pub hub: Arc<Hub>,
    state: Mutex<State>,
    scheduler: Mutex<Instance<scheduler::Names>>,
    /// Wakes the schedule (resume, a job ended).
    wake: Notify,
    /// Wakes the post-commit health watch ([`crate::watch`]): a job ended (a restart may
    /// have committed a release).
    pub watch_wake: Notify,
}

struct State {
    public: AgentState,
    stop: Option<StopToken>,
    /// The job a suspension stopped, resumed by `resume`.
    parked: Option<Job>,
    /// The last decision journaled (offer label and hold code), so only changes are.
    last_decision: Option<(String, Option<String>)>,
    /// Automatic jobs that failed in a row, and when the next may start.
    job_failures: u32,
    next_job: Instant,
    /// A scan is wanted now (after a restart, a reload, an audience change).
    scan_soon: bool,
    /// The restart command ran: the machine is going down, so it is not run again.
    restart_requested: bool,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("device", &self.device().dir)
            .finish()
    }
}

impl Agent {
    /// Opens the device for the daemon: its lock (a second daemon gets AGENT_RUNNING),
    /// its journal (observed by the event hub), and the `scheduler` machine's Start.
    pub async fn open(dir: &Path) -> Result<Arc<Agent>, DaemonError> {
        let device = match Device::open(dir) {
            Ok(device) => device,
            Err(ferry_agent::AgentError::DeviceBusy { dir }) => {
                let pid = crate::client::Client::connect(&dir)
                    .await
                    .ok()
                    .and_then(|c| c.pid());
                return Err(match pid {
                    Some(pid) => DaemonError::AlreadyRunning {
                        dir,
                        pid: Some(pid),
                    },
                    None => ferry_agent::AgentError::DeviceBusy { dir }.into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let hub = Hub::new(device.layout().journal_dir());
        let mut journal = Journal::open_observed(&device, Some(hub.observer()))?;
        for warning in &journal.warnings {
            tracing::warn!(code = warning.code, "{}", warning.cause);
        }
        let mut scheduler: Instance<scheduler::Names> = journal.instance("device", false)?;
        let suspended = scheduler.is_in(scheduler::State::SUSPENDED);
        scheduler.fire(
            scheduler::Event::Start,
            json!({
                "pid": std::process::id(),
                "version": env!("CARGO_PKG_VERSION"),
                "check_interval_secs": device.config.check_interval_secs,
                "policy": device.config.policy,
            }),
        )?;
        scheduler.complete_action()?;
        // The booted system's check: a slot the bootloader is trying is committed or
        // abandoned before anything else happens.
        match ferry_agent::boot::reboot::check_booted(&device, Some(&mut journal)) {
            Ok(None) => {}
            Ok(Some(booted)) => match &booted.failure {
                None => {
                    tracing::info!(slot = ?booted.tried, version = booted.version, "committed the slot that booted")
                }
                Some(failure) => {
                    tracing::warn!(code = failure.code, slot = ?booted.tried, "the slot that booted failed its check and was abandoned: {}", failure.cause)
                }
            },
            Err(error) => tracing::warn!(
                code = error.code(),
                "the boot check at start failed: {error}"
            ),
        }
        Ok(Arc::new(Agent {
            device: RwLock::new(Arc::new(device)),
            journal: tokio::sync::Mutex::new(journal),
            hub,
            state: Mutex::new(State {
                public: AgentState {
                    pid: std::process::id(),
                    suspended,
                    ..AgentState::default()
                },
                stop: None,
                parked: None,
                last_decision: None,
                job_failures: 0,
                next_job: Instant::now(),
                scan_soon: false,
                restart_requested: false,
            }),
            scheduler: Mutex::new(scheduler),
            wake: Notify::new(),
            watch_wake: Notify::new(),
        }))
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// The device as the agent holds it now (its config as last loaded).
    pub fn device(&self) -> Arc<Device> {
        match self.device.read() {
            Ok(device) => device.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_device(&self, device: Device) {
        let mut guard = match self.device.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(device);
    }

    /// Reads `config.toml` again (SIGHUP, `POST /v1/reload`): the policy, the window and
    /// the scan interval apply from the next decision and job on; a job under way keeps
    /// the config it started with. A file that does not parse, a window that cannot be
    /// evaluated, or a change of slots or boot control (which needs a restart) is refused
    /// with its code, and the running config stays.
    pub fn reload(&self) -> Result<Value, DaemonError> {
        let current = self.device();
        let path = current.layout().config();
        let invalid = |reason: String| DaemonError::ConfigInvalid {
            path: path.clone(),
            reason,
        };
        let fresh = current.reloaded().map_err(|e| match e {
            ferry_agent::AgentError::DeviceCorrupt { reason, .. } => invalid(reason),
            other => other.into(),
        })?;
        if let Some(w) = &fresh.config.policy.window {
            window::state(w, jiff::Timestamp::now())?;
        }
        let (old, new) = (&current.config, &fresh.config);
        let slots = |c: &ferry_agent::device::Config| {
            (c.slots.a.clone(), c.slots.b.clone(), c.slots.capacity)
        };
        if slots(old) != slots(new) || old.boot != new.boot {
            return Err(DaemonError::ReloadNeedsRestart { path });
        }
        let changed: Vec<&str> = [
            ("policy", old.policy != new.policy),
            (
                "check_interval_secs",
                old.check_interval_secs != new.check_interval_secs,
            ),
            ("audience", old.audience != new.audience),
            ("server", old.server != new.server),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect();
        let answer = json!({
            "reloaded": path,
            "changed": changed,
            "check_interval_secs": new.check_interval_secs,
            "policy": new.policy,
        });
        self.fire(scheduler::Event::Reload, answer.clone())?;
        self.set_device(fresh);
        self.with_state(|s| {
            s.last_decision = None;
            s.scan_soon |= !changed.is_empty();
        });
        self.wake.notify_one();
        Ok(answer)
    }

    /// Moves the device to `audience` (`ferry audience set` while the agent runs); the
    /// next scan, started now, offers what is open to it.
    pub fn set_audience(&self, audience: &str) -> Result<Value, DaemonError> {
        let mut device = self.device().reloaded()?;
        let previous = device.config.audience.clone();
        device.set_audience(audience)?;
        self.set_device(device);
        self.with_state(|s| s.scan_soon = true);
        self.wake.notify_one();
        Ok(json!({ "audience": audience, "previous": previous }))
    }

    /// The agent's state now.
    pub fn state(&self) -> AgentState {
        self.with_state(|s| s.public.clone())
    }

    fn fire(&self, event: scheduler::Event, data: Value) -> Result<(), DaemonError> {
        let mut guard = match self.scheduler.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.fire(event, data)?;
        guard.complete_action()?;
        Ok(())
    }

    /// Runs `job` (after the one running, if any) and returns its result as the local API
    /// answers it.
    pub async fn run_job(self: &Arc<Agent>, job: Job) -> Result<Value, DaemonError> {
        // A suspended agent still scans, lists and plays a restart it is asked for; it
        // downloads, installs and restarts nothing.
        let held_by_suspension = !matches!(
            job.kind,
            JobKind::Scan | JobKind::ListFull | JobKind::Reboot
        );
        if held_by_suspension && self.state().suspended {
            return Err(DaemonError::Suspended);
        }
        let mut journal = self.journal.lock().await;
        if held_by_suspension && self.state().suspended {
            return Err(DaemonError::Suspended);
        }
        let stop = StopToken::new();
        self.with_state(|s| {
            s.public.job = Some(Running {
                job: job.clone(),
                since: Utc::now(),
            });
            s.stop = Some(stop.clone());
        });
        let result = self.job(&mut journal, &job, stop.clone()).await;
        self.hub.clear_progress();
        self.with_state(|s| {
            s.public.job = None;
            s.stop = None;
            if stop.reason() == Some(StopReason::Suspended) {
                s.parked = Some(job.clone());
            }
        });
        drop(journal);
        self.wake.notify_one();
        self.watch_wake.notify_one();
        result
    }

    /// Runs `f` with the journal, after the job running (if any).
    pub async fn with_journal<T>(&self, f: impl FnOnce(&mut Journal) -> T) -> T {
        let mut journal = self.journal.lock().await;
        f(&mut journal)
    }

    async fn job(
        &self,
        journal: &mut Journal,
        job: &Job,
        stop: StopToken,
    ) -> Result<Value, DaemonError> {
        let device = &self.device();
        match job.kind {
            JobKind::Scan => {
                let offers = self.scan(journal, job.asked).await?;
                Ok(json!({ "offers": offers }))
            }
            JobKind::Download | JobKind::Install => {
                let offers = if job.asked {
                    self.scan(journal, true).await?
                } else {
                    self.with_state(|s| s.public.offers.iter().map(|o| o.offer.clone()).collect())
                };
                let Some(offer) = install::choose(&offers, job.label.as_deref())? else {
                    return Ok(json!({ "outcome": null }));
                };
                let mode = match job.kind {
                    JobKind::Download => Mode::Download,
                    _ => Mode::Install,
                };
                let options = Options {
                    sink: self.hub.as_ref(),
                    mode,
                    stop,
                };
                let outcome = install::run_offer(device, journal, &offer, &options).await?;
                Ok(json!({ "outcome": outcome }))
            }
            JobKind::Restart => match device.config.policy.restart(&device.config.boot) {
                Restart::Command(command) => {
                    run_restart_command(&command).await?;
                    self.with_state(|s| s.restart_requested = true);
                    Ok(json!({ "restart_command": command }))
                }
                Restart::Simulated => {
                    let outcome =
                        ferry_agent::boot::reboot::reboot_in(device, false, Some(journal))?;
                    self.restarted();
                    Ok(json!({ "rebooted": outcome }))
                }
            },
            JobKind::Reboot => {
                let outcome = ferry_agent::boot::reboot::reboot_in(
                    device,
                    job.simulate_crash,
                    Some(journal),
                )?;
                self.restarted();
                Ok(json!({ "rebooted": outcome }))
            }
            JobKind::ListFull => {
                let offers = install::list_full(device).await?;
                Ok(json!({ "offers": offers }))
            }
        }
    }

    /// A scan; the offers are kept, and a staged update a newer release supersedes is
    /// dropped.
    async fn scan(&self, journal: &mut Journal, asked: bool) -> Result<Vec<Offer>, DaemonError> {
        let device = self.device();
        // Its units (metadata files and bytes) go to the live stream, whoever asked.
        let found =
            ferry_agent::scan::scan_as_measured(&device, journal, asked, self.hub.as_ref()).await?;
        if let Some(recommended) = found.offers.iter().find(|o| o.recommended) {
            install::update::drop_superseded(&device, journal, recommended)?;
        }
        let states = self.offer_states(journal, &found.offers);
        self.with_state(|s| s.public.offers = states);
        Ok(found.offers)
    }

    /// Each offer with what the agent does next and why not more.
    fn offer_states(&self, journal: &Journal, offers: &[Offer]) -> Vec<OfferState> {
        let (suspended, restart_requested) =
            self.with_state(|s| (s.public.suspended, s.restart_requested));
        let device = self.device();
        offers
            .iter()
            .map(|offer| {
                let (mut next, mut why_not_now) = explain(&device, journal, offer, Some(suspended));
                if next == Next::Restart && restart_requested {
                    next = Next::Wait;
                    why_not_now = Some(schedule::restarting(&offer.version.to_string()));
                }
                OfferState {
                    offer: offer.clone(),
                    next,
                    why_not_now,
                }
            })
            .collect()
    }

    /// After a simulated restart: the offers are stale (the device runs another version),
    /// so they go, and a scan is due now.
    fn restarted(&self) {
        self.with_state(|s| {
            s.public.offers.clear();
            s.last_decision = None;
            s.scan_soon = true;
        });
    }

    /// Stops the job running now for `reason`; returns it.
    pub fn stop(&self, reason: StopReason) -> Option<Job> {
        self.with_state(|s| {
            if let Some(stop) = &s.stop {
                stop.stop(reason);
            }
            s.public.job.as_ref().map(|r| r.job.clone())
        })
    }

    /// Suspends: the running job stops (kept, resumed on `resume`), nothing starts.
    pub fn suspend(&self) -> Result<Option<Job>, DaemonError> {
        if !self.state().suspended {
            self.fire(
                scheduler::Event::Suspend,
                json!({ "job": self.state().job }),
            )?;
            self.with_state(|s| s.public.suspended = true);
        }
        Ok(self.stop(StopReason::Suspended))
    }

    /// Resumes: the schedule runs again, and the job a suspension stopped continues.
    pub fn resume(self: &Arc<Agent>) -> Result<Option<Job>, DaemonError> {
        if !self.state().suspended {
            return Ok(None);
        }
        self.fire(scheduler::Event::Resume, json!({}))?;
        let parked = self.with_state(|s| {
            s.public.suspended = false;
            s.parked.take()
        });
        if let Some(job) = parked.clone() {
            let agent = self.clone();
            tokio::spawn(async move {
                if let Err(error) = agent.run_job(job).await {
                    tracing::warn!(code = error.code(), "the resumed job failed: {error}");
                }
            });
        }
        self.wake.notify_one();
        Ok(parked)
    }

    /// The schedule, until `shutdown` resolves: background scans, then what the policy
    /// says for the offered update. The interval is read at every turn, so a reload
    /// applies to the next scan.
    pub async fn schedule(self: Arc<Agent>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let interval_now =
            |agent: &Agent| Duration::from_secs(agent.device().config.check_interval_secs.max(1));
        let mut next_scan =
            Instant::now() + schedule::first_scan_delay(interval_now(&self), rand::random());
        loop {
            let interval = interval_now(&self);
            if self.with_state(|s| std::mem::take(&mut s.scan_soon)) {
                next_scan = Instant::now();
            }
            self.with_state(|s| {
                s.public.next_scan = Some(
                    Utc::now()
                        + chrono::Duration::from_std(
                            next_scan.saturating_duration_since(Instant::now()),
                        )
                        .unwrap_or_default(),
                )
            });
            let wake_at = next_scan.min(Instant::now() + schedule::recheck_every(interval));
            tokio::select! {
                () = tokio::time::sleep_until(wake_at.into()) => {}
                () = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            self.deliver_due().await;
            if self.state().suspended {
                continue;
            }
            if self.with_state(|s| std::mem::take(&mut s.scan_soon)) {
                next_scan = Instant::now();
            }
            if Instant::now() >= next_scan {
                let scanned = self.run_job(Job::scheduled(JobKind::Scan, None)).await;
                let failures = self.with_state(|s| {
                    s.public.scan_failures = match &scanned {
                        Ok(_) => 0,
                        Err(_) => s.public.scan_failures + 1,
                    };
                    s.public.scan_failures
                });
                next_scan = Instant::now()
                    + match &scanned {
                        Ok(_) => schedule::after_success(interval, rand::random()),
                        Err(error) => {
                            tracing::warn!(
                                code = error.code(),
                                failures,
                                "background scan failed: {error}"
                            );
                            schedule::after_failure(interval, failures, retry_after(error))
                        }
                    };
            }
            if let Err(error) = self.act(interval).await {
                tracing::warn!(code = error.code(), "the agent could not act: {error}");
            }
        }
    }

    /// Sends the queued event reports when the outbox's back-off allows (one round of at
    /// most [`DELIVERY_ROUND`]); a server that is away leaves them queued for a later round.
    async fn deliver_due(&self) {
        let device = self.device();
        let due = {
            let outbox = device.outbox();
            !outbox.is_empty() && outbox.due(Utc::now())
        };
        if due {
            ferry_agent::report::deliver::deliver_within(&device, DELIVERY_ROUND).await;
        }
    }

    /// Decides what to do with the recommended offer, journals the decision when it
    /// changed, and runs the job it calls for (a download, an install, the restart into
    /// an installed update).
    async fn act(self: &Arc<Agent>, interval: Duration) -> Result<(), DaemonError> {
        let Ok(journal) = self.journal.try_lock() else {
            return Ok(()); // a job runs: decide after it
        };
        let offers: Vec<Offer> =
            self.with_state(|s| s.public.offers.iter().map(|o| o.offer.clone()).collect());
        let states = self.offer_states(&journal, &offers);
        drop(journal);
        self.with_state(|s| s.public.offers = states.clone());
        let Some(chosen) = states.into_iter().find(|o| o.offer.recommended) else {
            return Ok(());
        };
        let decision = (
            chosen.offer.label.clone(),
            chosen.why_not_now.as_ref().map(|h| h.code.clone()),
        );
        let changed = self.with_state(|s| {
            let changed = s.last_decision.as_ref() != Some(&decision);
            s.last_decision = Some(decision);
            changed
        });
        if changed && let Some(hold) = &chosen.why_not_now {
            self.fire(
                scheduler::Event::Hold,
                json!({ "label": chosen.offer.label, "hold": hold }),
            )?;
        }
        // The bar says what it waits for instead of showing nothing (again after a job
        // cleared it).
        if let Some(hold) = &chosen.why_not_now
            && (changed || self.hub.last_progress().is_none())
        {
            use ferry_agent::progress::ProgressSink;
            self.hub.report(&waiting_sample(hold));
        }
        let kind = match chosen.next {
            Next::Wait => return Ok(()),
            Next::Download => JobKind::Download,
            Next::Install => JobKind::Install,
            Next::Restart => JobKind::Restart,
        };
        if let Some(left) = self.with_state(|s| s.next_job.checked_duration_since(Instant::now())) {
            use ferry_agent::progress::ProgressSink;
            self.hub.report(&ferry_agent::progress::Progress {
                state: "ACCEPTED",
                action: format!("{} {}", kind_text(kind), chosen.offer.label),
                waiting: Some(format!(
                    "waiting to retry: the last attempt failed; retrying in {} s",
                    left.as_secs().max(1)
                )),
                ..Default::default()
            });
            return Ok(());
        }
        let job = Job::scheduled(kind, Some(chosen.offer.label.clone()));
        self.fire(scheduler::Event::Act, json!({ "job": job }))?;
        let result = self.run_job(job).await;
        self.with_state(|s| match &result {
            Ok(_) => s.job_failures = 0,
            Err(_) => {
                s.job_failures += 1;
                s.next_job =
                    Instant::now() + schedule::after_failure(interval, s.job_failures, None);
            }
        });
        result.map(|_| ())
    }

    /// Scans at the schedule's next turn, started now (after a deferral, say).
    pub fn scan_soon(&self) {
        self.with_state(|s| s.scan_soon = true);
        self.wake.notify_one();
    }

    /// Wakes the schedule now (to deliver a report just queued, say).
    pub fn wake_up(&self) {
        self.wake.notify_one();
    }

    /// `ferry doctor --fix` for the device this agent holds: the checks, then the repairs
    /// they call for, with no job running meanwhile.
    pub async fn doctor_fix(&self) -> Vec<ferry_agent::doctor::Fixed> {
        use ferry_agent::doctor::{self, Scope, Subject};
        let _journal = self.journal.lock().await;
        let device = self.device();
        let report = doctor::run(&Subject::of_device(&device), &Scope::All).await;
        doctor::fix::fix_device(&device, &report).await
    }

    /// Stops the running job for shutdown and waits until it has made its state durable.
    pub async fn shut_down(&self) {
        self.stop(StopReason::Shutdown);
        let _idle = self.journal.lock().await;
    }
}

/// Runs the restart command; it must start (and exit 0, for `systemctl reboot`, once the
/// shutdown is queued).
async fn run_restart_command(command: &[String]) -> Result<(), DaemonError> {
    let failed = |reason: String| DaemonError::RestartFailed {
        command: command.join(" "),
        reason,
    };
    let Some((program, args)) = command.split_first() else {
        return Err(failed("the command is empty".into()));
    };
    let status = tokio::process::Command::new(program)
        .args(args)
        .status()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !status.success() {
        return Err(failed(format!("it exited with {status}")));
    }
    Ok(())
}

/// How long the server asked the device to wait before it asks again, if it did.
fn retry_after(error: &DaemonError) -> Option<Duration> {
    match error {
        DaemonError::Agent(ferry_agent::AgentError::Catalog(e)) => e.retry_after(),
        _ => None,
    }
}

fn kind_text(kind: JobKind) -> &'static str {
    match kind {
        JobKind::Download => "Downloading",
        JobKind::Install => "Installing",
        _ => "Restarting into",
    }
}
