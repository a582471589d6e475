//! The `ferry` command. Only this crate knows clap and how errors look on a terminal:
//! it parses flags ([`args`]), calls the library crates, and renders ([`render`]).
//!
//! Exit codes: 0 success, 1 an operation failed (its code printed once), 2 bad usage.
//!
//! One module per group of commands (`server_cmds`, `key_cmds`, `fleet_cmds`,
//! `publish_cmds`, `cache_cmd`, `device_cmds`, `boot_cmds`, `report_cmds`, `agent_cmds`,
//! `log_cmds`, `tuf_cmds`, `bench`, `bench_events`, `demo`); each returns a [`Failure`]
//! (`failure`), which `main` renders once. They import only the leaves (`args`, `failure`,
//! `render`, `images`, `local`; `server_cmds` also `key_cmds` and `fleet_cmds`, `demo` also
//! `fleet_cmds`, `device_cmds` also `boot_cmds` for `install --reboot`),
//! never `main` or each other. Device commands go through the running agent's local API
//! when there is one (`local`), else work on the directory.

mod agent_cmds;
mod args;
mod bench;
mod bench_agent;
mod bench_events;
mod bench_fleet;
mod bench_progress;
mod boot_cmds;
mod cache_cmd;
mod chart;
mod demo;
mod device_cmds;
mod doctor_cmds;
mod entitlement_cmds;
mod failure;
mod fleet_cmds;
mod images;
mod init_cmd;
mod key_cmds;
mod local;
mod log_cmds;
mod publish_cmds;
mod render;
mod report_cmds;
mod rollout_cmds;
mod server_cmds;
mod tuf_cmds;
mod user_cmds;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    // Repairs the device makes on its own are shown where they happen, whichever command
    // meets them.
    ferry_agent::warnings::set_reporter(render::warning);
    match main_inner(cli) {
        Ok(code) => code,
        Err(failure) => {
            render::error(
                &failure.report,
                failure.data.as_ref(),
                failure.diagnosis.as_deref(),
                failure.json,
            );
            ExitCode::from(1)
        }
    }
}

fn main_inner(cli: Cli) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                "RUNTIME",
                format!("the async runtime could not start: {e}"),
                "check the system's thread and file limits",
            )
        })?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(a) => server_cmds::server(a).await,
            Command::Publish(a) => publish_cmds::publish(a).await,
            Command::Device(args::DeviceCommand::Init(a)) => init_cmd::device_init(a).await,
            Command::Audience(args::AudienceCommand::Set(a)) => device_cmds::audience_set(a).await,
            Command::Defer(a) => device_cmds::defer(a).await,
            Command::Tuf(a) => tuf_cmds::run(a).await,
            Command::List(a) if a.why => device_cmds::why(a.device).await,
            Command::List(a) => device_cmds::list(a.device, false).await,
            Command::ListFull(a) => device_cmds::list(a, true).await,
            Command::Install(a) => device_cmds::install(a).await,
            Command::Download(a) => device_cmds::download(a).await,
            Command::Agent(a) => agent_cmds::agent(a).await,
            Command::Progress(a) => agent_cmds::progress(a).await,
            Command::Status(a) => report_cmds::status(a).await,
            Command::History(a) => report_cmds::history(a).await,
            Command::Reboot(a) => boot_cmds::reboot(a).await,
            Command::Doctor(a) => doctor_cmds::doctor(a).await,
            Command::PurgeCache(a) => doctor_cmds::purge_cache(a),
            Command::BootCheck(a) => boot_cmds::boot_check(a).await,
            Command::Deliver(a) => report_cmds::deliver(a).await,
            Command::Demo(a) => demo::run(a).await,
            Command::Bench(args::BenchCommand::Personalize(a)) => bench::personalize(a).await,
            Command::Bench(args::BenchCommand::Events(a)) => bench_events::run(a).await,
            Command::Bench(args::BenchCommand::Agent(a)) => bench_agent::agent(a).await,
            Command::Bench(args::BenchCommand::Progress(a)) => bench_progress::progress(a).await,
            Command::Bench(args::BenchCommand::Fleet(a)) => bench_fleet::run(a).await,
            Command::Cache(a) => cache_cmd::cache(a).await,
            Command::Rollout(a) => rollout_cmds::rollout(a).await,
            Command::Entitlement(a) => entitlement_cmds::entitlement(a).await,
            Command::Log(args::LogCommand::Show(a)) => log_cmds::show(a).await,
            Command::Log(args::LogCommand::Replay(a)) => log_cmds::replay(a).await,
            Command::Log(args::LogCommand::Chart(a)) => log_cmds::chart(a),
            Command::Fsm(c) => log_cmds::fsm(c),
        }
    })
}

fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Server(_) => "info,tower_http=info",
        Command::Agent(args::AgentArgs { command: None, .. }) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
