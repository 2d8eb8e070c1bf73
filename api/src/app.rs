//! The one constructor of the application: it opens the backends a role needs, builds the
//! shared state and the router, binds the listener, and runs the server and its background
//! tasks until cancelled. Tests start it on port 0 with their own stream and database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secureconnect_commands::CommandBus;
use secureconnect_events::{EphemeralBus, EventLog, TicketStore};
use secureconnect_projections::{ProjectionStatus, ReadModels};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::{PasswordHasher, RevokedSessions, TokenIssuer};
use crate::backends::{Backends, ReadModelProgress};
use crate::config::Settings;
use crate::http::Consistency;
use crate::realtime::follower::LogFollower;
use crate::realtime::hub::ChatHub;

/// The parts of the system this process runs next to the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerRole {
    /// The API and every projector.
    Serve,
    /// The API only; projector processes keep the read models elsewhere.
    Api,
}

impl ServerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerRole::Serve => "serve",
            ServerRole::Api => "api",
        }
    }
}

/// The state every handler shares. Cloning it clones `Arc`s.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub bus: Arc<CommandBus>,
    pub log: Arc<dyn EventLog>,
    pub read_models: Arc<dyn ReadModels>,
    pub progress: Arc<dyn ReadModelProgress>,
    pub consistency: Arc<Consistency>,
    pub tokens: Arc<TokenIssuer>,
    pub passwords: Arc<PasswordHasher>,
    pub revoked_sessions: Arc<RevokedSessions>,
    pub hub: Arc<ChatHub>,
    pub ephemeral: Arc<dyn EphemeralBus>,
    pub tickets: Arc<dyn TicketStore>,
    /// Cancelled when the process shuts down, so open sockets close with 1001 Going Away.
    pub shutdown: CancellationToken,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    backends: Backends,
    role: ServerRole,
}

impl Application {
    pub async fn build(settings: Settings, role: ServerRole) -> anyhow::Result<Application> {
        let settings = Arc::new(settings);
        let backends = Backends::open(&settings, role).await?;
        let secret = backends.jwt_secret(&settings).await?;
        let tokens = Arc::new(TokenIssuer::new(
            &secret,
            settings.auth.issuer.clone(),
            settings.auth.audience.clone(),
            Duration::from_secs(settings.auth.access_token_ttl_secs),
            Duration::from_secs(settings.auth.refresh_token_ttl_secs),
        )?);
        let passwords = Arc::new(PasswordHasher::new(settings.auth.password_hash_workers).await?);
        let revoked_sessions = Arc::new(RevokedSessions::new(tokens.access_ttl()));
        let consistency = Arc::new(Consistency::new(
            backends.progress.clone(),
            backends.log.clone(),
            settings.read_wait_timeout(),
        ));
        let state = AppState {
            bus: backends.command_bus(&settings),
            log: backends.log.clone(),
            read_models: backends.read_models.clone(),
            progress: backends.progress.clone(),
            consistency,
            tokens,
            passwords,
            revoked_sessions,
            hub: Arc::new(ChatHub::new(settings.websocket.send_queue_frames)),
            ephemeral: backends.ephemeral.clone(),
            tickets: backends.tickets.clone(),
            shutdown: CancellationToken::new(),
            settings: settings.clone(),
        };
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .map_err(|error| {
                anyhow::anyhow!("failed to bind {}: {error}", settings.server.listen)
            })?;
        Ok(Application {
            listener,
            state,
            backends,
            role,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs the server and its background tasks until `cancel` fires or a task fails, then
    /// shuts down in order: stop accepting, let in-flight requests finish (bounded by
    /// `server.shutdown_grace_secs`), let projectors commit their batch, and return.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            backends,
            role,
        } = self;
        let router = crate::router::build(state.clone());
        let grace = Duration::from_secs(state.settings.server.shutdown_grace_secs);
        let mut tasks = NamedTasks::default();

        let server_cancel = cancel.clone();
        tasks.spawn("http server", async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(server_cancel.cancelled_owned())
            .await?;
            Ok(())
        });

        let follower = LogFollower {
            log: state.log.clone(),
            hub: state.hub.clone(),
            revoked_sessions: state.revoked_sessions.clone(),
        };
        tasks.spawn("log follower", follower.run(cancel.clone()));

        let pruner_state = state.clone();
        let pruner_cancel = cancel.clone();
        tasks.spawn("pruner", async move {
            let mut interval = tokio::time::interval(Duration::from_secs(10));
            loop {
                tokio::select! {
                    _ = pruner_cancel.cancelled() => return Ok(()),
                    _ = interval.tick() => {
                        pruner_state.consistency.prune();
                        pruner_state.revoked_sessions.prune(chrono::Utc::now());
                    }
                }
            }
        });

        if role == ServerRole::Serve {
            let settings = state.settings.clone();
            let log = backends.log.clone();
            let store = backends.store.clone();
            let projector_cancel = cancel.clone();
            tasks.spawn("projectors", async move {
                Backends::run_projectors(log, store, &settings, None, projector_cancel).await
            });
        }

        tracing::info!(
            role = role.as_str(),
            backend = state.log.backend_name(),
            address = %state.settings.server.listen,
            "secureconnect started"
        );
        let outcome = tasks.wait_first(&cancel).await;
        state.shutdown.cancel();
        tasks.drain(grace).await;
        backends.close().await;
        outcome
    }
}

impl AppState {
    pub async fn readiness(&self) -> ReadinessReport {
        let event_log = match self.log.head_position().await {
            Ok(_) => CheckResult::ok(),
            Err(error) => CheckResult::failed(error.to_string()),
        };
        let statuses = self.progress.statuses(self.log.as_ref()).await;
        let read_models = match &statuses {
            Ok(_) => CheckResult::ok(),
            Err(error) => CheckResult::failed(format!("{error:#}")),
        };
        let projections = statuses.unwrap_or_default();
        let max_lag_events = self.settings.consistency.ready_max_lag_events;
        let max_lag_secs = self.settings.consistency.ready_max_lag_secs;
        let projections_caught_up = !projections.is_empty()
            && projections.iter().all(|status| {
                status.lag_events <= max_lag_events && status.lag_seconds <= max_lag_secs
            });
        let revocations_caught_up = self.revoked_sessions.is_caught_up();
        ReadinessReport {
            ready: event_log.ok && read_models.ok && projections_caught_up && revocations_caught_up,
            event_log,
            read_models,
            projections_caught_up,
            revocations_caught_up,
            projections,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    pub event_log: CheckResult,
    pub read_models: CheckResult,
    pub projections_caught_up: bool,
    pub revocations_caught_up: bool,
    pub projections: Vec<ProjectionStatus>,
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckResult {
    fn ok() -> CheckResult {
        CheckResult {
            ok: true,
            error: None,
        }
    }

    fn failed(error: String) -> CheckResult {
        CheckResult {
            ok: false,
            error: Some(error),
        }
    }
}

/// Background tasks with names, so that shutdown logs which one ended and why.
#[derive(Default)]
pub struct NamedTasks {
    set: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl NamedTasks {
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.set.spawn(async move { (name, task.await) });
    }

    /// Waits until `cancel` fires or the first task ends; in the second case it cancels the
    /// others. Returns the first task's error, if it failed.
    pub async fn wait_first(&mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let first = tokio::select! {
            _ = cancel.cancelled() => {
                tracing::info!("shutdown requested; stopping tasks");
                return Ok(());
            }
            first = self.set.join_next() => first,
        };
        cancel.cancel();
        match first {
            Some(Ok((name, Ok(())))) => {
                tracing::info!(task = name, "task ended; shutting down");
                Ok(())
            }
            Some(Ok((name, Err(error)))) => {
                tracing::error!(
                    task = name,
                    error = format!("{error:#}"),
                    "task failed; shutting down"
                );
                Err(error.context(format!("{name} failed")))
            }
            Some(Err(join_error)) => {
                tracing::error!(error = %join_error, "task panicked; shutting down");
                Err(anyhow::anyhow!("a task panicked: {join_error}"))
            }
            None => Ok(()),
        }
    }

    /// Waits for the remaining tasks, at most `grace`, reporting how each ended.
    pub async fn drain(&mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            match tokio::time::timeout_at(deadline, self.set.join_next()).await {
                Ok(Some(Ok((name, Ok(()))))) => tracing::info!(task = name, "task stopped"),
                Ok(Some(Ok((name, Err(error))))) => {
                    tracing::warn!(
                        task = name,
                        error = format!("{error:#}"),
                        "task stopped with an error"
                    )
                }
                Ok(Some(Err(join_error))) => {
                    tracing::warn!(error = %join_error, "task panicked while stopping")
                }
                Ok(None) => return,
                Err(_) => {
                    tracing::warn!(
                        remaining = self.set.len(),
                        "tasks did not stop within the grace period; aborting them"
                    );
                    self.set.abort_all();
                    return;
                }
            }
        }
    }
}
