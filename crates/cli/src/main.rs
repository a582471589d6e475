//! The `ferry` command. Only this crate knows clap and how errors look on a terminal:
//! it parses flags ([`args`]), calls the library crates, and renders ([`render`]).
//!
//! Exit codes: 0 success, 1 an operation failed (its code printed once), 2 bad usage.

mod args;
mod bench;
mod demo;
mod device_cmds;
mod images;
mod key_cmds;
mod log_cmds;
mod render;
mod tuf_cmds;

use std::process::ExitCode;

use clap::Parser;
use ferry_types::{Diagnose, Report};

use args::{Cli, Command};

/// A failure on its way to the terminal: the rendered report, the data behind it (a
/// personalization refusal's times, limits, ids) and whether to print JSON.
pub struct Failure {
    report: Report,
    data: Option<serde_json::Value>,
    json: bool,
}

impl<E: Diagnose> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            report: e.report(),
            data: None,
            json: false,
        }
    }
}

/// An agent error with its data: a refusal's `data` member travels with it.
pub fn agent_failure(e: ferry_agent::AgentError) -> Failure {
    let data = match &e {
        ferry_agent::AgentError::Refused(refusal) => Some(refusal.data()),
        _ => None,
    };
    let mut failure = Failure::from(e);
    failure.data = data;
    failure
}

impl Failure {
    /// Marks the failure for JSON output.
    pub fn json(mut self, json: bool) -> Failure {
        self.json = json;
        self
    }

    /// A failure that no library error describes.
    pub fn new(code: &str, cause: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            report: Report {
                code: code.into(),
                cause: cause.into(),
                fix: fix.into(),
            },
            data: None,
            json: false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    match main_inner(cli) {
        Ok(code) => code,
        Err(failure) => {
            render::error(&failure.report, failure.data.as_ref(), failure.json);
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
            Command::Server(a) => device_cmds::server(a).await,
            Command::Publish(a) => device_cmds::publish(a).await,
            Command::Device(args::DeviceCommand::Init(a)) => device_cmds::device_init(a).await,
            Command::Audience(args::AudienceCommand::Set(a)) => device_cmds::audience_set(a),
            Command::Tuf(a) => tuf_cmds::run(a).await,
            Command::List(a) => device_cmds::list(a, false).await,
            Command::ListFull(a) => device_cmds::list(a, true).await,
            Command::Install(a) => device_cmds::install(a).await,
            Command::Status(a) => device_cmds::status(a),
            Command::History(a) => device_cmds::history(a),
            Command::Reboot(a) => device_cmds::reboot(a),
            Command::Doctor(a) => device_cmds::doctor(a).await,
            Command::BootCheck(a) => device_cmds::boot_check(a),
            Command::Demo(a) => demo::run(a).await,
            Command::Bench(args::BenchCommand::Personalize(a)) => bench::personalize(a).await,
            Command::Cache(a) => device_cmds::cache(a).await,
            Command::Log(args::LogCommand::Show(a)) => log_cmds::show(a),
            Command::Log(args::LogCommand::Replay(a)) => log_cmds::replay(a),
            Command::Fsm(c) => log_cmds::fsm(c),
        }
    })
}

fn init_tracing(cli: &Cli) {
    let default = match cli.command {
        Command::Server(_) => "info,tower_http=info",
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
