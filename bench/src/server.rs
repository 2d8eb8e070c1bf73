//! The server under test as a child process: `secureconnect serve` started with environment
//! variables that point it at the run's own stream, database or data directory, a free
//! loopback port and a fresh JWT secret. Its output goes to a log file so that warnings can
//! be shown after the figures instead of among them.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use tokio::process::{Child, Command};

use crate::environment::Environment;
use crate::options::Backend;

/// Maximum time from start until `GET /health` returns 200, migrations included.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ServerProcess {
    child: Child,
    pid: u32,
    pub base_url: String,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts the server and waits until `GET /health` returns 200.
    pub async fn start(binary: &Path, environment: &Environment) -> anyhow::Result<ServerProcess> {
        let listen = free_loopback_port()?;
        let jwt_secret = hex::encode(rand::rng().random::<[u8; 48]>());
        let log_path = environment.data_dir().join("server.log");
        let log_file = File::create(&log_path)
            .with_context(|| format!("failed to create {}", log_path.display()))?;

        let mut command = Command::new(binary);
        command
            .arg("serve")
            .env("SECURECONNECT_AUTH__JWT_SECRET", jwt_secret)
            .env("SECURECONNECT_SERVER__LISTEN", listen.to_string())
            .env("SECURECONNECT_LOG__FILTER", "warn")
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("failed to share the server log file")?,
            )
            .stderr(log_file)
            .kill_on_drop(true);
        match environment.backend {
            Backend::Nats => {
                let names = &environment.names;
                let postgres_url = environment
                    .postgres_url
                    .as_deref()
                    .context("the NATS backend needs the benchmark database's URL")?;
                command
                    .env("SECURECONNECT_NATS__URL", &environment.nats_url)
                    .env("SECURECONNECT_NATS__STREAM_NAME", &names.stream)
                    .env("SECURECONNECT_NATS__SUBJECT_PREFIX", &names.subject_prefix)
                    .env(
                        "SECURECONNECT_NATS__EPHEMERAL_PREFIX",
                        &names.ephemeral_prefix,
                    )
                    .env("SECURECONNECT_POSTGRES__URL", postgres_url);
            }
            Backend::Embedded => {
                command.env(
                    "SECURECONNECT_STORAGE__DATA_DIR",
                    environment.data_dir().join("store"),
                );
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = ServerProcess {
            child,
            pid,
            base_url: format!("http://{listen}"),
            log_path,
        };
        server.wait_until_healthy().await?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn wait_until_healthy(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let health_url = format!("{}/health", self.base_url);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited with {status} before GET /health returned 200; its log:\n{}",
                    self.log_tail(40)
                );
            }
            let answered = client.get(&health_url).send().await;
            if answered.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "GET {health_url} did not return 200 within {}s; the server log:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Returns the exit status if the server has stopped.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Returns the server's log lines; with `SECURECONNECT_LOG__FILTER=warn` these are its
    /// warnings and errors.
    pub fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log_path)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn log_tail(&self, count: usize) -> String {
        let lines = self.log_lines();
        lines[lines.len().saturating_sub(count)..].join("\n")
    }

    /// Sends SIGTERM so the server shuts down as in production, and kills it if it has not
    /// exited within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let terminated = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .context("failed to run kill")?;
        if terminated.success()
            && tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_ok()
        {
            return Ok(());
        }
        self.child
            .kill()
            .await
            .context("failed to kill the server")?;
        Ok(())
    }
}

/// Returns a loopback address with a port that was free a moment ago. Another process could
/// take the port before the server binds it, and the server then fails to start with an
/// error in its log.
fn free_loopback_port() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("failed to find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}
