//! `ferry bench agent`: the running agent's figures (issue 12) — the round trip of
//! `GET /v1/status` over its socket (one connection per request, as every device command
//! makes), and the time from `POST /v1/cancel` to the download under way stopping (the
//! install's answer arriving). `bench/agent` sets up a server and a device, measures the
//! idle daemon's RSS and CPU from `/proc`, then runs this.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferry_daemon::client::{CallError, Client};
use serde_json::json;

use crate::args::BenchAgentArgs;
use crate::failure::Failure;

fn bench_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        "BENCH_FAILED",
        format!("the benchmark could not {what}: {e}"),
        "Start the agent for --device first (ferry agent --device DIR) with an update offered that is not installed",
    )
}

fn call_failure(what: &str, e: CallError) -> Failure {
    match e {
        CallError::Local(e) => bench_failure(what, e),
        CallError::Remote(r) => {
            bench_failure(what, format!("{} [{}]", r.report.cause, r.report.code))
        }
    }
}

/// The `q` quantile (0 to 1) of sorted `samples`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the benchmark against the agent of `--device` and prints its figures.
pub async fn agent(a: BenchAgentArgs) -> Result<ExitCode, Failure> {
    let client = Client::connect(&a.device)
        .await
        .map_err(|e| bench_failure("reach the agent", e))?;

    // Status round trips, one after another.
    let mut status = Vec::with_capacity(a.requests);
    for _ in 0..a.requests {
        let started = Instant::now();
        client
            .get("/v1/status")
            .await
            .map_err(|e| call_failure("get the status", e))?;
        status.push(started.elapsed());
    }
    status.sort();

    // Cancels: an install, a cancel once its download is under way, its answer.
    let mut cancels = Vec::new();
    for _ in 0..a.cancels {
        let installing = {
            let client = client.clone();
            let label = a.label.clone();
            tokio::spawn(async move { client.post("/v1/install", json!({ "label": label })).await })
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let progress = client
                .get("/v1/progress")
                .await
                .map_err(|e| call_failure("follow the progress", e))?;
            if progress["progress"]["state"] == "DOWNLOADING_UPDATE" {
                break;
            }
            if installing.is_finished() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if installing.is_finished() {
            break; // nothing left to download: the install finished
        }
        tokio::time::sleep(Duration::from_millis(a.cancel_after_ms)).await;
        let asked = Instant::now();
        client
            .post("/v1/cancel", json!({}))
            .await
            .map_err(|e| call_failure("cancel", e))?;
        let answer = installing
            .await
            .map_err(|e| bench_failure("wait for the install", e))?;
        let stopped = asked.elapsed();
        match answer {
            Err(CallError::Remote(r)) if r.report.code == "CANCELLED" => cancels.push(stopped),
            Ok(_) => break, // the download finished before the cancel
            Err(e) => return Err(call_failure("install", e)),
        }
    }
    cancels.sort();

    let figures = json!({
        "status": {
            "requests": status.len(),
            "p50_ms": ms(quantile(&status, 0.5)),
            "p99_ms": ms(quantile(&status, 0.99)),
            "max_ms": ms(quantile(&status, 1.0)),
        },
        "cancel": {
            "runs": cancels.len(),
            "median_ms": ms(quantile(&cancels, 0.5)),
            "max_ms": ms(quantile(&cancels, 1.0)),
        },
    });
    if a.json {
        println!("{figures}");
    } else {
        println!(
            "GET /v1/status round trip ({} requests): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            status.len(),
            figures["status"]["p50_ms"].as_f64().unwrap_or_default(),
            figures["status"]["p99_ms"].as_f64().unwrap_or_default(),
            figures["status"]["max_ms"].as_f64().unwrap_or_default(),
        );
        println!(
            "cancel -> download stopped ({} runs): median {:.1} ms, max {:.1} ms",
            cancels.len(),
            figures["cancel"]["median_ms"].as_f64().unwrap_or_default(),
            figures["cancel"]["max_ms"].as_f64().unwrap_or_default(),
        );
    }
    Ok(ExitCode::SUCCESS)
}
