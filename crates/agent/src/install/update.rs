//! The runs that move an update along the `update` machine: `ferry install` (download if
//! needed, verify, seal, apply), `ferry download` (the same, stopping before apply: the
//! update is staged), and `ferry list`. A cancel or suspension parks the update with
//! what it downloaded; a newer release, or a closed signing window met when a staged
//! update's ticket is refreshed, drops it, and says which.

use chrono::Utc;
use ferry_types::{Diagnose, Report};
use serde_json::json;

use crate::AgentError;
use crate::device::Device;
use crate::device::PayloadKind;
use crate::install::controller::{Dropped, Finished, InstallOutcome, Mode, Run, update_id};
use crate::install::record::InstallProgress;
use crate::journal::{Instance, Journal};
use crate::machines::{controller, update};
use crate::offer::{self, Offer};
use crate::progress::ProgressSink;
use crate::progress::tracker::{self, Tracker};
use crate::stop::{StopReason, StopToken};
use crate::trust::catalog;

/// The code of the reason a staged update is dropped for a newer release.
pub const SUPERSEDED: &str = "SUPERSEDED";

/// How often the bar is re-estimated between reports of work.
const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// How a run is steered.
#[derive(Clone)]
pub struct Options<'a> {
    /// Where progress goes.
    pub sink: &'a dyn ProgressSink,
    /// Install, or download only.
    pub mode: Mode,
    /// Stops the run part-way (cancel, suspend, shutdown).
    pub stop: StopToken,
}

/// The offers for this device (a journaled scan).
pub async fn list(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let mut journal = Journal::open(device)?;
    Ok(crate::scan::scan(device, &mut journal).await?.offers)
}

/// Every full image for the device's class and audience (`list-full`), from a fresh scan.
pub async fn list_full(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let catalog::Refreshed { catalog, warnings } = catalog::refresh(device).await?;
    let n_offers = offer::offers(
        catalog.releases(),
        |name| catalog.target(name),
        device.identity.device_class.as_str(),
        &device.config.audience,
        &device.running_version()?,
    )
    .len();
    catalog::record(device, Ok(n_offers), &warnings);
    Ok(offer::full_images(
        catalog.releases(),
        |name| catalog.target(name),
        device.identity.device_class.as_str(),
        &device.config.audience,
    ))
}

/// Installs the offer labelled `label`, or the recommended one when `label` is `None`.
/// `Ok(None)`: nothing to install.
pub async fn install(
    device: &Device,
    label: Option<&str>,
    sink: &dyn ProgressSink,
) -> Result<Option<InstallOutcome>, AgentError> {
    run_mode(device, label, sink, Mode::Install).await
}

/// Stages the offer labelled `label` (the recommended one when `None`): personalized,
/// downloaded, verified and sealed into the inactive slot, not applied. `Ok(None)`:
/// nothing to download.
pub async fn download(
    device: &Device,
    label: Option<&str>,
    sink: &dyn ProgressSink,
) -> Result<Option<InstallOutcome>, AgentError> {
    run_mode(device, label, sink, Mode::Download).await
}

/// [`run`] in `mode` with a stop token nobody else holds.
async fn run_mode(
    device: &Device,
    label: Option<&str>,
    sink: &dyn ProgressSink,
    mode: Mode,
) -> Result<Option<InstallOutcome>, AgentError> {
    let options = Options {
        sink,
        mode,
        stop: StopToken::new(),
    };
    run(device, label, &options).await
}

/// Scans, then runs `options.mode` for the offer labelled `label` (the recommended one
/// when `None`). `Ok(None)`: nothing is offered.
pub async fn run(
    device: &Device,
    label: Option<&str>,
    options: &Options<'_>,
) -> Result<Option<InstallOutcome>, AgentError> {
    let mut journal = Journal::open(device)?;
    let offers = crate::scan::scan_measured(device, &mut journal, options.sink)
        .await?
        .offers;
    let Some(offer) = choose(&offers, label)? else {
        return Ok(None);
    };
    run_offer(device, &mut journal, &offer, options)
        .await
        .map(Some)
}

/// The offer labelled `label` among `offers`, or the recommended one when `None`.
pub fn choose(offers: &[Offer], label: Option<&str>) -> Result<Option<Offer>, AgentError> {
    match label {
        None => Ok(offers.iter().find(|o| o.recommended).cloned()),
        Some(l) => offers
            .iter()
            .find(|o| o.label == l)
            .cloned()
            .map(Some)
            .ok_or_else(|| AgentError::NoSuchLabel {
                label: l.to_owned(),
                available: offers.iter().map(|o| o.label.clone()).collect(),
            }),
    }
}

/// Runs `options.mode` for `offer` on the `update` and `controller` machines, dropping
/// first a staged or parked update that `offer` supersedes.
pub async fn run_offer(
    device: &Device,
    journal: &mut Journal,
    offer: &Offer,
    options: &Options<'_>,
) -> Result<InstallOutcome, AgentError> {
    let id = update_id(device, &offer.release.build_id);
    let id_text = id.to_string();
    let dropped: Vec<Dropped> = drop_superseded(device, journal, offer)?
        .into_iter()
        .collect();
    let mut update: Instance<update::Names> = journal.instance(&id_text, true)?;
    // Downloading what is already applied only finishes the install's books.
    let mode = if options.mode == Mode::Download && update.is_in(update::State::STAGED) {
        Mode::Install
    } else {
        options.mode
    };
    let event = match mode {
        Mode::Install => update::Event::Install,
        Mode::Download => update::Event::Download,
    };
    if let Err(e) = update.fire(
        event,
        json!({ "label": offer.label, "version": offer.version }),
    ) {
        let _ = update.fire(update::Event::Fail, json!({ "error": e.report() }));
        return Err(e);
    }
    let mut controller: Instance<controller::Names> = journal.instance(&id_text, true)?;
    // Progress goes through the tracker (the honest bar, the progress log) to the
    // caller's sink and, sampled, to the event outbox.
    let sampled = crate::report::build::Sampled {
        inner: options.sink,
        reporter: journal.reporter().clone(),
        update: id,
    };
    let tracker = Tracker::start(device, id, &tracker::work_of(offer), &sampled);
    let mut run = Run::new(device, offer, id, &tracker, mode, options.stop.clone());
    let result = {
        let drive = run.drive(journal, &mut controller);
        tokio::pin!(drive);
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                result = &mut drive => break result,
                _ = tick.tick() => tracker.tick(),
            }
        }
    };
    match result {
        Ok(finished) => {
            tracker.finish(
                device,
                run.outcome().map_or(PayloadKind::Full, |o| o.payload_kind),
            );
            let (event, data) = match finished {
                Finished::Applied => (
                    update::Event::Installed,
                    json!({ "slot": run.target, "receipt": run.receipt }),
                ),
                Finished::Held => (update::Event::Prestaged, json!({ "slot": run.target })),
            };
            update.fire(event, data)?;
            let mut outcome = run.outcome()?;
            outcome.dropped = dropped;
            outcome.warnings = journal.warnings.clone();
            Ok(outcome)
        }
        // The next start resumes from where the machines stand, as after a crash.
        Err(
            e @ AgentError::Stopped {
                reason: StopReason::Shutdown,
                ..
            },
        ) => Err(e),
        Err(e @ AgentError::Stopped { .. })
            if controller.is_in(controller::State::DOWNLOADING_UPDATE) =>
        {
            let report = e.report();
            let _ = controller.fire(controller::Event::Cancel, json!({ "stop": report }));
            let _ = update.fire(update::Event::Cancel, json!({ "stop": report }));
            Err(e)
        }
        Err(e) => {
            let report = e.report();
            let refreshing = run.ticket_refreshed_or_refreshing(&controller);
            // Record the failure; if even that fails, the original error matters more.
            let _ = controller.fire(controller::Event::Fail, json!({ "error": report }));
            if e.code() == "NOT_SIGNED" && refreshing && update.is_in(update::State::INSTALLING) {
                // The staged update's ticket could not be refreshed: the server no
                // longer signs the build, so the staged slot is dropped.
                let _ = update.fire(update::Event::Drop, json!({ "reason": report }));
                remove_record_of(device, id)?;
            } else {
                let _ = update.fire(update::Event::Fail, json!({ "error": report }));
            }
            Err(e)
        }
    }
}

/// Drops the staged (or parked) update whose data the install record holds when it is
/// not `offer`'s: a newer release supersedes it. Returns what was dropped.
pub fn drop_superseded(
    device: &Device,
    journal: &mut Journal,
    offer: &Offer,
) -> Result<Option<Dropped>, AgentError> {
    let keep = update_id(device, &offer.release.build_id);
    let Some(record) = install_record(device) else {
        return Ok(None);
    };
    if record.update_id == keep {
        return Ok(None);
    }
    let reason = Report {
        code: SUPERSEDED.into(),
        cause: format!(
            "version {} supersedes the {} update to {}",
            offer.version,
            if record.sealed.is_some() {
                "staged"
            } else {
                "parked"
            },
            record.version
        ),
        fix: format!("Nothing to do: {} is offered instead", offer.label),
    };
    drop_update(device, journal, &record, reason)
}

/// Drops the update `record` belongs to, if it is staged or parked, for `reason`: its
/// `Drop` transition says why, and the install record goes (the slot it wrote was never
/// bootable). Returns what was dropped.
pub fn drop_update(
    device: &Device,
    journal: &mut Journal,
    record: &InstallProgress,
    reason: Report,
) -> Result<Option<Dropped>, AgentError> {
    let id_text = record.update_id.to_string();
    let state = journal.peek::<update::Names>(&id_text)?;
    if !matches!(
        state,
        Some(update::State::PRESTAGED | update::State::PARKED)
    ) {
        return Ok(None);
    }
    let mut update: Instance<update::Names> = journal.instance(&id_text, false)?;
    update.fire(
        update::Event::Drop,
        json!({ "reason": reason, "version": record.version, "at": Utc::now() }),
    )?;
    remove_record_of(device, record.update_id)?;
    Ok(Some(Dropped {
        update_id: record.update_id,
        version: record.version.clone(),
        reason,
    }))
}

/// The install record, if one is there and readable.
pub fn install_record(device: &Device) -> Option<InstallProgress> {
    crate::device::read_json(&device.layout().install_record()).ok()
}

/// Removes the install record if it belongs to update `id`.
fn remove_record_of(device: &Device, id: uuid::Uuid) -> Result<(), AgentError> {
    if install_record(device).is_some_and(|r| r.update_id == id) {
        let path = device.layout().install_record();
        ferry_durable::remove(&path).map_err(AgentError::io("removing install progress", &path))?;
    }
    Ok(())
}
