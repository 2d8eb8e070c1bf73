//! The figures of one run, printed for a reader and serialized for `--json`. Latencies are
//! recorded in microseconds and reported in milliseconds; memory in MiB; CPU in seconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::lag::ProjectionLag;
use crate::load::LoadOutcome;
use crate::options::Options;
use crate::raw_append::RawAppendOutcome;
use crate::usage::CpuSplit;

#[derive(Debug, Serialize)]
pub struct Report {
    /// When the run finished, RFC 3339 in UTC.
    pub date: String,
    /// `git describe --always --dirty` of the working directory, if it is a checkout.
    pub git_commit: Option<String>,
    pub machine: Machine,
    pub settings: Settings,
    pub http: HttpFigures,
    pub raw_append: Option<RawAppendFigures>,
    /// HTTP sends per second divided by raw appends per second.
    pub http_to_raw_append_ratio: Option<f64>,
    /// The server's log lines at `warn` and above during the run.
    pub server_log: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: u64,
    pub memory_gib: f64,
    pub kernel: String,
    /// Cores that other programs kept busy during the seconds before the server started.
    pub busy_cores_before_run: f64,
}

impl Machine {
    pub fn describe(busy_cores_before_run: f64) -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                meminfo
                    .lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|value| {
                        value
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
            })
            .unwrap_or(0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|release| release.trim().to_owned())
            .unwrap_or_default();
        Machine {
            cores,
            memory_gib: memory_kib as f64 / (1024.0 * 1024.0),
            kernel,
            busy_cores_before_run,
        }
    }
}

/// Returns `git describe --always --dirty` of the working directory.
pub fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub backend: &'static str,
    pub senders: u32,
    pub warmup_seconds: u64,
    pub duration_seconds: u64,
    pub content_bytes: u32,
}

impl Settings {
    pub fn from_options(options: &Options) -> Settings {
        Settings {
            backend: options.backend.as_str(),
            senders: options.senders,
            warmup_seconds: options.warmup,
            duration_seconds: options.duration,
            content_bytes: options.content_bytes,
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    /// Reads a histogram of microseconds; all zero when it is empty.
    pub fn of(micros: &Histogram<u64>) -> Percentiles {
        if micros.is_empty() {
            return Percentiles {
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
            };
        }
        let millis = |value: u64| value as f64 / 1000.0;
        Percentiles {
            mean: micros.mean() / 1000.0,
            p50: millis(micros.value_at_quantile(0.50)),
            p90: millis(micros.value_at_quantile(0.90)),
            p99: millis(micros.value_at_quantile(0.99)),
            p99_9: millis(micros.value_at_quantile(0.999)),
            max: millis(micros.max()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct HttpFigures {
    /// Successful sends (2xx) whose response arrived inside the measured window.
    pub sends: u64,
    /// Failed sends inside the window, by status or transport error.
    pub errors: BTreeMap<String, u64>,
    pub messages_per_second: f64,
    pub latency_ms: Percentiles,
    pub projection_lag_ms: Percentiles,
    /// The method that observed the projection's position.
    pub projection_lag_sampling: String,
    /// Sends whose position the `messages` projection had not reached when the benchmark
    /// stopped waiting; they are not in the lag percentiles.
    pub never_projected: u64,
    /// Sends already projected when their response arrived, counted as a lag of 0.
    pub projected_before_response: u64,
    /// Successful sends without a readable `X-Event-Position`; not in the lag percentiles.
    pub missing_event_position: u64,
    /// LISTEN reconnects or `/ready` polls without a `messages` position.
    pub position_watch_failures: u64,
    /// The server's resident memory after registration and before the load.
    pub server_rss_after_setup_mib: f64,
    pub server_peak_rss_mib: f64,
    pub client_peak_rss_mib: f64,
    /// CPU time inside the measured window.
    pub cpu: CpuSplit,
    pub cpu_micros_per_send: CpuPerOperation,
}

impl HttpFigures {
    pub fn new(
        options: &Options,
        load: &LoadOutcome,
        lag: &ProjectionLag,
        memory: &MemoryFigures,
        cpu: CpuSplit,
    ) -> HttpFigures {
        let sends = load.successful_sends();
        HttpFigures {
            sends,
            errors: load.errors.clone(),
            messages_per_second: sends as f64 / options.duration as f64,
            latency_ms: Percentiles::of(&load.latency),
            projection_lag_ms: Percentiles::of(&lag.histogram),
            projection_lag_sampling: lag.sampling.describe(),
            never_projected: lag.never_projected,
            projected_before_response: lag.projected_before_response,
            missing_event_position: load.missing_position,
            position_watch_failures: lag.watch_failures,
            server_rss_after_setup_mib: mebibytes(memory.server_rss_after_setup_bytes),
            server_peak_rss_mib: mebibytes(memory.server_peak_rss_bytes),
            client_peak_rss_mib: mebibytes(memory.client_peak_rss_bytes),
            cpu_micros_per_send: CpuPerOperation::new(&cpu, sends),
            cpu,
        }
    }
}

/// Memory read from `/proc`, in bytes.
pub struct MemoryFigures {
    pub server_rss_after_setup_bytes: u64,
    pub server_peak_rss_bytes: u64,
    pub client_peak_rss_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct RawAppendFigures {
    pub appenders: u32,
    /// Acknowledged appends inside the measured window.
    pub appends: u64,
    pub errors: BTreeMap<String, u64>,
    pub appends_per_second: f64,
    pub ack_latency_ms: Percentiles,
    pub body_bytes: usize,
    pub body_source: &'static str,
    /// CPU time inside the measured window; the server is stopped by then.
    pub cpu: CpuSplit,
    pub cpu_micros_per_append: CpuPerOperation,
}

impl RawAppendFigures {
    pub fn new(options: &Options, outcome: &RawAppendOutcome) -> RawAppendFigures {
        let appends = outcome.latency.len();
        RawAppendFigures {
            appenders: options.senders,
            appends,
            errors: outcome.errors.clone(),
            appends_per_second: appends as f64 / options.duration as f64,
            ack_latency_ms: Percentiles::of(&outcome.latency),
            body_bytes: outcome.body_bytes,
            body_source: outcome.body_source.as_str(),
            cpu: outcome.cpu.clone(),
            cpu_micros_per_append: CpuPerOperation::new(&outcome.cpu, appends),
        }
    }
}

/// CPU microseconds per successful operation, by process. The total leaves out "other",
/// which belongs to programs outside the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct CpuPerOperation {
    pub server: f64,
    pub client: f64,
    pub nats_server: f64,
    pub postgres: f64,
    pub total: f64,
}

impl CpuPerOperation {
    fn new(cpu: &CpuSplit, operations: u64) -> CpuPerOperation {
        let per_operation = |seconds: f64| {
            if operations == 0 {
                0.0
            } else {
                seconds * 1e6 / operations as f64
            }
        };
        let server = per_operation(cpu.server_seconds);
        let client = per_operation(cpu.client_seconds);
        let nats_server = per_operation(cpu.nats_server_seconds);
        let postgres = per_operation(cpu.postgres_seconds);
        CpuPerOperation {
            server,
            client,
            nats_server,
            postgres,
            total: server + client + nats_server + postgres,
        }
    }
}

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report {
    /// Formats the figures for a terminal.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        let settings = &self.settings;
        let http = &self.http;
        let _ = writeln!(
            text,
            "\nsecureconnect-bench {} ({}), {} backend, {} senders, {} s warmup, {} s measured, \
             {}-byte content",
            self.date,
            self.git_commit.as_deref().unwrap_or("no git checkout"),
            settings.backend,
            settings.senders,
            settings.warmup_seconds,
            settings.duration_seconds,
            settings.content_bytes,
        );
        let _ = writeln!(
            text,
            "machine: {} cores, {:.1} GiB, Linux {}, {:.2} cores busy with other programs before \
             the run\n",
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.kernel,
            self.machine.busy_cores_before_run
        );
        let _ = writeln!(text, "HTTP  POST /v1/messages");
        let _ = writeln!(text, "  sends              {}", http.sends);
        let _ = writeln!(
            text,
            "  errors             {}",
            describe_errors(&http.errors)
        );
        let _ = writeln!(
            text,
            "  throughput         {:.0} messages/s",
            http.messages_per_second
        );
        let _ = writeln!(
            text,
            "  latency ms         {}",
            latency_line(&http.latency_ms)
        );
        let _ = writeln!(
            text,
            "  projection lag ms  {}",
            lag_line(&http.projection_lag_ms)
        );
        let _ = writeln!(
            text,
            "    sampled by       {}",
            http.projection_lag_sampling
        );
        let _ = writeln!(
            text,
            "    projected before the response arrived: {}; never projected: {}; without \
             X-Event-Position: {}; failed position reads: {}",
            http.projected_before_response,
            http.never_projected,
            http.missing_event_position,
            http.position_watch_failures
        );
        let _ = writeln!(
            text,
            "  memory             server peak RSS {:.1} MiB ({:.1} MiB after setup), client \
             peak RSS {:.1} MiB",
            http.server_peak_rss_mib, http.server_rss_after_setup_mib, http.client_peak_rss_mib
        );
        let _ = writeln!(text, "  CPU s              {}", cpu_line(&http.cpu, true));
        let _ = writeln!(
            text,
            "  CPU µs per send    {}",
            per_operation_line(&http.cpu_micros_per_send, true)
        );

        if let Some(raw) = &self.raw_append {
            let _ = writeln!(
                text,
                "\nJetStream  raw appends, {} appenders, {}-byte bodies ({})",
                raw.appenders, raw.body_bytes, raw.body_source
            );
            let _ = writeln!(text, "  appends            {}", raw.appends);
            let _ = writeln!(
                text,
                "  errors             {}",
                describe_errors(&raw.errors)
            );
            let _ = writeln!(
                text,
                "  throughput         {:.0} appends/s",
                raw.appends_per_second
            );
            let _ = writeln!(
                text,
                "  ack latency ms     {}",
                latency_line(&raw.ack_latency_ms)
            );
            let _ = writeln!(text, "  CPU s              {}", cpu_line(&raw.cpu, false));
            let _ = writeln!(
                text,
                "  CPU µs per append  {}",
                per_operation_line(&raw.cpu_micros_per_append, false)
            );
        }
        if let Some(ratio) = self.http_to_raw_append_ratio {
            let _ = writeln!(
                text,
                "\nHTTP sends per raw append: {ratio:.2} (HTTP throughput / raw append throughput)"
            );
        }
        if !self.server_log.is_empty() {
            let shown_lines = self.server_log.len().min(20);
            let _ = writeln!(
                text,
                "\nthe server logged {} lines at warn or above; the last {shown_lines}:",
                self.server_log.len()
            );
            for line in &self.server_log[self.server_log.len() - shown_lines..] {
                let _ = writeln!(text, "  {line}");
            }
        }
        text
    }
}

fn describe_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".to_owned();
    }
    let total: u64 = errors.values().sum();
    let kinds: Vec<String> = errors
        .iter()
        .map(|(kind, count)| format!("{kind}: {count}"))
        .collect();
    format!("{total} ({})", kinds.join(", "))
}

fn latency_line(latency: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        latency.p50, latency.p90, latency.p99, latency.p99_9, latency.max, latency.mean
    )
}

fn lag_line(lag: &Percentiles) -> String {
    format!(
        "p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        lag.p50, lag.p99, lag.p99_9, lag.max, lag.mean
    )
}

fn per_operation_line(cpu: &CpuPerOperation, with_server: bool) -> String {
    let server = if with_server {
        format!("server {:.0}, ", cpu.server)
    } else {
        String::new()
    };
    format!(
        "{server}client {:.0}, nats-server {:.0}, postgres {:.0}, total {:.0}",
        cpu.client, cpu.nats_server, cpu.postgres, cpu.total
    )
}

fn cpu_line(cpu: &CpuSplit, with_server: bool) -> String {
    let available = cpu.cores as f64 * cpu.wall_seconds;
    let server = if with_server {
        format!("server {:.1}, ", cpu.server_seconds)
    } else {
        String::new()
    };
    format!(
        "{server}client {:.1}, nats-server {:.1}, postgres {:.1}, other {:.1}, idle {:.1} \
         of {available:.1} ({} cores x {:.1} s)",
        cpu.client_seconds,
        cpu.nats_server_seconds,
        cpu.postgres_seconds,
        cpu.other_seconds,
        cpu.idle_seconds,
        cpu.cores,
        cpu.wall_seconds
    )
}
