//! `ferry log` and `ferry fsm`: the journal, read-only, and the machines' tables.

use std::process::ExitCode;

use ferry_agent::device::Device;
use ferry_agent::machines;

use crate::args::{DeviceArgs, FsmCommand, LogShowArgs};
use crate::failure::Failure;
use ferry_types::Diagnose;

async fn read(a: &DeviceArgs) -> Result<ferry_fsm::JournalRead, Failure> {
    let journal = match crate::local::agent(&a.device).await {
        Some(agent) => {
            let answer = crate::local::call(&agent, "/v1/journal", None, a.json).await?;
            let records = crate::local::read(&answer, "/v1/journal", Some("records"), a.json)?;
            ferry_fsm::JournalRead {
                records,
                torn: None,
                rotated_out: answer["rotated_out"] == true,
            }
        }
        None => {
            let device = Device::open(&a.device).map_err(|e| Failure::from(e).json(a.json))?;
            ferry_fsm::read_journal(device.layout().journal_dir())
                .map_err(|e| fsm_failure(&e).json(a.json))?
        }
    };
    if let Some(torn) = &journal.torn {
        eprintln!(
            "warning[JOURNAL_TORN]: the end of {} is torn ({} bytes, {} records); they are skipped",
            torn.path.display(),
            torn.n_bytes_dropped,
            torn.n_records_dropped
        );
    }
    Ok(journal)
}

fn fsm_failure(e: &ferry_fsm::FsmError) -> Failure {
    Failure::new(e.code(), e.to_string(), e.fix())
}

pub async fn show(a: LogShowArgs) -> Result<ExitCode, Failure> {
    let journal = read(&a.device).await?;
    for r in journal.records.iter().filter(|r| {
        a.fsm.as_deref().is_none_or(|f| r.fsm == f) && a.id.as_deref().is_none_or(|id| r.id == id)
    }) {
        if a.device.json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        } else {
            let data = if r.data.is_null() {
                String::new()
            } else {
                format!(" {}", r.data)
            };
            let blob = r
                .blob
                .as_deref()
                .map(|b| format!(" [{b}]"))
                .unwrap_or_default();
            println!(
                "{} {}[{}] {} --{}--> {} ({}){data}{blob}",
                r.t.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                r.fsm,
                r.id,
                r.s,
                r.e,
                r.next,
                r.a
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn replay(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let journal = read(&a).await?;
    let all = machines::all().map_err(|e| Failure::new(e.code(), e.to_string(), e.fix()))?;
    match ferry_fsm::replay_from(&all, &journal.records, journal.start()) {
        Ok(report) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": true, "instances": report.n_instances, "transitions": report.n_transitions, "finished": report.n_finished })
                );
            } else {
                println!(
                    "replay ok: {} transitions of {} instances reproduced ({} finished)",
                    report.n_transitions, report.n_instances, report.n_finished
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(divergence) => {
            Err(
                Failure::new(divergence.code(), divergence.to_string(), divergence.fix())
                    .json(a.json),
            )
        }
    }
}

pub fn fsm(c: FsmCommand) -> Result<ExitCode, Failure> {
    let find = |name: &str| {
        machines::by_name(name).ok_or_else(|| {
            Failure::new(
                "NO_SUCH_MACHINE",
                format!("there is no machine named {name:?}"),
                format!(
                    "use one of: {}",
                    machines::ALL
                        .iter()
                        .map(|d| d.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    };
    match c {
        FsmCommand::Dot { name } => print!("{}", find(&name)?.to_dot()),
        FsmCommand::Table { name } => {
            let m = find(&name)?;
            println!("{:<20} {:<14} {:<16} next", "state", "event", "action");
            for r in m.rows() {
                println!(
                    "{:<20} {:<14} {:<16} {}",
                    r.state, r.event, r.action, r.next
                );
            }
        }
        FsmCommand::List => {
            for d in machines::ALL {
                println!(
                    "{:<14} initial {:<10} finals {:?}, {} rows",
                    d.name,
                    d.initial,
                    d.finals,
                    d.rows.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry log chart`: the chart of an install's progress log (the given update's, or the
/// most recent one's) as SVG or PNG.
pub fn chart(a: crate::args::LogChartArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let device = Device::open(&a.device.device).map_err(|e| Failure::from(e).json(json))?;
    let layout = device.layout();
    let path = match a.update {
        Some(id) => Some(layout.progress_log(id)).filter(|p| p.exists()),
        None => ferry_agent::progress::log::latest(&layout.progress_dir()),
    };
    let no_log = || {
        Failure::new(
            "NO_PROGRESS_LOG",
            match a.update {
                Some(id) => format!("the device has no progress log of update {id}"),
                None => "the device has no progress log: it has not installed an update since progress logs were kept".into(),
            },
            "install or download an update on this device (`ferry install`), then chart it; `ls DEVICE/progress` lists the updates that have a log",
        )
        .json(json)
    };
    let path = path.ok_or_else(no_log)?;
    let samples = ferry_agent::progress::log::read(&path);
    if samples.is_empty() {
        return Err(no_log());
    }
    let update = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let title = format!(
        "ferry install {update} ({:.0} s)",
        samples.last().map_or(0.0, |s| s.t)
    );
    crate::chart::draw(&samples, &title, &a.out).map_err(|reason| {
        Failure::new(
            "CHART_FAILED",
            format!(
                "the chart could not be written to {}: {reason}",
                a.out.display()
            ),
            "give --out a path ending in .svg or .png in a directory you can write to",
        )
        .json(json)
    })?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "chart": a.out, "log": path, "samples": samples.len() })
        );
    } else {
        println!(
            "wrote {} ({} samples from {})",
            a.out.display(),
            samples.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
