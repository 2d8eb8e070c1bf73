//! The command line of `secureconnect-bench`: which backend the server runs on, how many
//! senders drive it, for how long, and where the services and binaries are.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

/// Starts a real `secureconnect serve` on a fresh stream and database and sends messages from
/// concurrent senders over HTTP. Prints throughput, latency, projection lag, memory and CPU
/// time, then measures raw JetStream appends at the same concurrency for comparison.
#[derive(Debug, Clone, Parser)]
#[command(name = "secureconnect-bench", version)]
pub struct Options {
    /// Backend of the server under test: NATS JetStream and PostgreSQL, or the embedded
    /// SQLite store in a temporary directory.
    #[arg(long, value_enum, default_value_t = Backend::Nats)]
    pub backend: Backend,

    /// Number of concurrent senders. Each has its own user, conversation and keep-alive
    /// connection, and sends the next message when the previous response has arrived.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub senders: u32,

    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,

    /// Seconds of sending before the measured window starts; nothing sent then is counted.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub warmup: u64,

    /// Size of each message's `content`, in bytes of ASCII text.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub content_bytes: u32,

    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Skip the raw JetStream append measurement that follows the HTTP run. It is always
    /// skipped with `--backend embedded`.
    #[arg(long)]
    pub skip_raw_append: bool,

    /// The server binary to start. Defaults to `secureconnect` beside this program, which is
    /// `target/release/secureconnect` after `scripts/bench` has built both.
    #[arg(long, value_name = "PATH")]
    pub server_binary: Option<PathBuf>,

    /// NATS server with JetStream; must be on a loopback address.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,

    /// PostgreSQL connection allowed to create and drop databases; must be on a loopback
    /// address. The benchmark's own database is created beside the one named here.
    #[arg(
        long,
        value_name = "URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// NATS JetStream for the event log, PostgreSQL for the read models.
    Nats,
    /// The embedded SQLite store for both.
    Embedded,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Nats => "nats",
            Backend::Embedded => "embedded",
        }
    }
}

impl Options {
    pub fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    pub fn runs_raw_append(&self) -> bool {
        self.backend == Backend::Nats && !self.skip_raw_append
    }

    /// Rejects service URLs that point away from this machine, because the benchmark sends
    /// load and creates and drops streams and databases wherever they point.
    pub fn check_services_are_local(&self) -> anyhow::Result<()> {
        if self.backend == Backend::Nats {
            require_loopback("--nats-url", &self.nats_url)?;
            require_loopback("--postgres-url", &self.postgres_url)?;
        }
        Ok(())
    }
}

fn require_loopback(option: &str, url: &str) -> anyhow::Result<()> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid {option} {url:?}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let is_loopback =
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !is_loopback {
        bail!(
            "{option} {url:?} is not on a loopback address; the benchmark only targets services on this machine"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::require_loopback;

    #[test]
    fn loopback_urls_accepted() {
        for url in [
            "nats://127.0.0.1:4222",
            "postgres://postgres@localhost:5432/postgres",
            "nats://[::1]:4222",
            "postgres://postgres@127.0.0.2/postgres",
        ] {
            assert!(require_loopback("--url", url).is_ok(), "{url}");
        }
    }

    #[test]
    fn other_hosts_rejected() {
        for url in [
            "nats://10.0.0.5:4222",
            "postgres://postgres@192.168.1.2:5432/postgres",
            "nats://example.com:4222",
            "not a url",
        ] {
            assert!(require_loopback("--url", url).is_err(), "{url}");
        }
    }
}
