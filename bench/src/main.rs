//! `secureconnect-bench` starts the real server on a fresh stream and database (or a fresh
//! embedded store) and sends messages from concurrent senders over HTTP for a warmup and a
//! measured window. It prints throughput, latency, projection lag, memory and CPU time, then
//! measures raw JetStream appends at the same concurrency for comparison. Everything it
//! created is removed at the end, also after a failure or Ctrl-C.
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line benchmark reports its progress and figures on the terminal"
)]

mod environment;
mod lag;
mod load;
mod options;
mod raw_append;
mod report;
mod server;
mod setup;
mod usage;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Parser;

use crate::environment::Environment;
use crate::lag::ProjectionWatch;
use crate::load::Window;
use crate::options::{Backend, Options};
use crate::raw_append::{commit_body, measure_raw_appends};
use crate::report::{
    HttpFigures, Machine, MemoryFigures, RawAppendFigures, Report, Settings, git_commit,
};
use crate::server::ServerProcess;
use crate::usage::{
    ClockTicks, CpuSnapshot, CpuSplit, background_busy_cores, peak_resident_bytes, resident_bytes,
};

/// Maximum wait after the load for the `messages` projection to reach the last measured send.
/// Sends still unprojected after it are reported as never projected.
const PROJECTION_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// Busy cores before the run above which the benchmark warns that the machine is shared.
const BUSY_MACHINE_CORES: f64 = 0.2;

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_and_clean_up(options))
}

async fn run_and_clean_up(options: Options) -> ExitCode {
    let prepared = options
        .check_services_are_local()
        .and_then(|()| server_binary(&options));
    let server_binary = match prepared {
        Ok(binary) => binary,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut environment = match Environment::create(&options).await {
        Ok(environment) => environment,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match options.backend {
        Backend::Nats => eprintln!(
            "bench: stream {}, database {}",
            environment.names.stream, environment.names.database
        ),
        Backend::Embedded => {
            eprintln!("bench: data directory {}", environment.data_dir().display())
        }
    }

    let outcome = tokio::select! {
        outcome = run(&options, &server_binary, &mut environment) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted by Ctrl-C")),
    };

    eprintln!("bench: stopping the server and removing what the run created");
    let cleanup_failures = environment.remove().await;
    for failure in &cleanup_failures {
        eprintln!("warning: cleanup: {failure}");
    }

    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.to_text());
    if let Some(path) = &options.json
        && let Err(error) = write_json(path, &report)
    {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Returns `--server-binary`, or `secureconnect` beside this program.
fn server_binary(options: &Options) -> anyhow::Result<PathBuf> {
    let binary = match &options.server_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()
            .context("failed to locate this program")?
            .with_file_name("secureconnect"),
    };
    if !binary.is_file() {
        bail!(
            "server binary {} not found: build it with `cargo build --release -p \
             secureconnect-api`, or pass --server-binary",
            binary.display()
        );
    }
    Ok(binary)
}

async fn run(
    options: &Options,
    server_binary: &Path,
    environment: &mut Environment,
) -> anyhow::Result<Report> {
    let ticks = ClockTicks::read();
    let background_cores = background_busy_cores(ticks).await?;
    if background_cores > BUSY_MACHINE_CORES {
        eprintln!(
            "warning: other programs keep {background_cores:.1} cores busy before the run, so \
             the figures will be lower than on an idle machine"
        );
    }
    eprintln!("bench: starting {} serve", server_binary.display());
    let server = ServerProcess::start(server_binary, environment).await?;
    let base_url = server.base_url.clone();
    let server_pid = server.pid();
    environment.server = Some(server);

    eprintln!(
        "bench: registering {} senders and opening their conversations",
        options.senders
    );
    let senders = setup::prepare_senders(&base_url, options.senders).await?;
    let first_conversation = senders
        .first()
        .map(|sender| sender.conversation_id)
        .context("no sender was prepared")?;
    // Registration hashes passwords with argon2id, whose buffers the allocator may keep. The
    // memory before the load separates that from what sending costs.
    let server_rss_after_setup = resident_bytes(&server_pid.to_string())?;

    let mut watch = match options.backend {
        Backend::Nats => {
            let database_url = environment
                .postgres_url
                .as_deref()
                .context("the NATS backend needs the benchmark database's URL")?;
            ProjectionWatch::listen(database_url).await?
        }
        Backend::Embedded => ProjectionWatch::poll_ready(&base_url)?,
    };

    eprintln!(
        "bench: sending with {} senders: {} s warmup, then {} s measured",
        options.senders, options.warmup, options.duration
    );
    let start = Instant::now() + options.warmup();
    let window = Window {
        start,
        end: start + options.duration(),
    };
    let load = tokio::spawn(load::send_messages(
        base_url.clone(),
        senders,
        options.content_bytes as usize,
        window,
    ));
    tokio::time::sleep_until(window.start.into()).await;
    let before = CpuSnapshot::take(Some(server_pid))?;
    tokio::time::sleep_until(window.end.into()).await;
    let after = CpuSnapshot::take(Some(server_pid))?;
    let load = load.await.context("a sender panicked")??;
    let cpu = CpuSplit::between(&before, &after, ticks);

    if let Some(last_position) = load.acknowledged.iter().map(|send| send.position).max()
        && !watch
            .wait_for(last_position, PROJECTION_CATCH_UP_TIMEOUT)
            .await
    {
        eprintln!(
            "warning: the messages projection did not reach position {last_position} within {} s",
            PROJECTION_CATCH_UP_TIMEOUT.as_secs()
        );
    }
    let lag = watch.finish(&load.acknowledged).await?;
    let server_peak_rss = peak_resident_bytes(&server_pid.to_string())?;
    let client_peak_rss = peak_resident_bytes("self")?;

    let server = environment
        .server
        .as_mut()
        .context("the server handle is gone")?;
    if let Some(status) = server.exit_status() {
        bail!(
            "the server exited with {status} during the run; its log:\n{}",
            server.log_lines().join("\n")
        );
    }
    let server_log = server.log_lines();
    let memory = MemoryFigures {
        server_rss_after_setup_bytes: server_rss_after_setup,
        server_peak_rss_bytes: server_peak_rss,
        client_peak_rss_bytes: client_peak_rss,
    };
    let http = HttpFigures::new(options, &load, &lag, &memory, cpu);

    let raw_append = if options.runs_raw_append() {
        let names = &environment.names;
        let subject = format!("{}.conversation.{first_conversation}", names.subject_prefix);
        let body = commit_body(
            &options.nats_url,
            names,
            &subject,
            options.content_bytes as usize,
        )
        .await;
        // The raw appends get the machine to themselves; the server's stream stays until
        // the cleanup deletes it.
        if let Some(server) = environment.server.take() {
            server.stop().await?;
        }
        eprintln!(
            "bench: appending to JetStream directly with {} appenders: {} s warmup, then {} s \
             measured",
            options.senders, options.warmup, options.duration
        );
        let outcome = measure_raw_appends(options, names, body, ticks).await?;
        Some(RawAppendFigures::new(options, &outcome))
    } else {
        None
    };

    let http_to_raw_append_ratio = raw_append
        .as_ref()
        .filter(|raw| raw.appends_per_second > 0.0)
        .map(|raw| http.messages_per_second / raw.appends_per_second);
    Ok(Report {
        date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git_commit: git_commit(),
        machine: Machine::describe(background_cores),
        settings: Settings::from_options(options),
        http,
        raw_append,
        http_to_raw_append_ratio,
        server_log,
    })
}

fn write_json(path: &Path, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(report).context("failed to serialize the figures")?;
    std::fs::write(path, json + "\n").with_context(|| format!("failed to write {}", path.display()))
}
