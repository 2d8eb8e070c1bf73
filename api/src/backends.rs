//! Opening the backends a role needs, for either deployment: the embedded SQLite files under
//! `storage.data_dir`, or JetStream plus PostgreSQL. Everything above this module uses only
//! the traits.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use secureconnect_commands::{BusOptions, CommandBus};
use secureconnect_events::embedded::{EmbeddedLog, InMemoryTicketStore, InProcessBus};
use secureconnect_events::{EphemeralBus, EventLog, SnapshotStore, TicketStore};
use secureconnect_nats::{JetStreamBackend, JetStreamConfig};
use secureconnect_projections::{
    ProjectionName, ProjectionPositions, ProjectionStatus, ProjectorOptions, ReadModelStore,
    ReadModels, StoreOptions, migrate_postgres, run_projections,
};
use tokio_util::sync::CancellationToken;

use crate::app::ServerRole;
use crate::config::{Backend, Settings};

const EVENT_LOG_FILE: &str = "events.sqlite";
const READ_MODEL_FILE: &str = "read-models.sqlite";
const JWT_SECRET_FILE: &str = "jwt-secret";

/// How far the read models have come, as queries and `/ready` need it.
#[async_trait]
pub trait ReadModelProgress: Send + Sync + 'static {
    /// Waits until every projection in `projections` has applied `min_position`; false on
    /// timeout.
    async fn wait_for(
        &self,
        projections: &[ProjectionName],
        min_position: u64,
        timeout: Duration,
    ) -> bool;

    /// Returns the lowest position that every projection has applied, as last seen by this
    /// process.
    fn min_position(&self) -> u64;

    /// Reads each projection's stored checkpoint and its lag behind the log's head, in log
    /// positions and in seconds.
    async fn statuses(&self, log: &dyn EventLog) -> anyhow::Result<Vec<ProjectionStatus>>;
}

struct StoreProgress {
    positions: ProjectionPositions,
}

#[async_trait]
impl ReadModelProgress for StoreProgress {
    async fn wait_for(
        &self,
        projections: &[ProjectionName],
        min_position: u64,
        timeout: Duration,
    ) -> bool {
        self.positions
            .wait_for(projections, min_position, timeout)
            .await
            .is_ok()
    }

    fn min_position(&self) -> u64 {
        ProjectionName::ALL
            .into_iter()
            .map(|name| self.positions.position(name))
            .min()
            .unwrap_or(0)
    }

    async fn statuses(&self, log: &dyn EventLog) -> anyhow::Result<Vec<ProjectionStatus>> {
        Ok(self.positions.status(log).await?)
    }
}

/// The opened backends of one process.
pub struct Backends {
    pub log: Arc<dyn EventLog>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub ephemeral: Arc<dyn EphemeralBus>,
    pub tickets: Arc<dyn TicketStore>,
    pub store: ReadModelStore,
    pub read_models: Arc<dyn ReadModels>,
    pub progress: Arc<dyn ReadModelProgress>,
    data_dir: Option<std::path::PathBuf>,
}

impl Backends {
    pub async fn open(settings: &Settings, role: ServerRole) -> anyhow::Result<Backends> {
        match settings.backend() {
            Backend::Embedded => {
                if role != ServerRole::Serve {
                    anyhow::bail!(
                        "the embedded store runs every role in one process: use `serve`, or \
                         configure NATS and PostgreSQL to run roles apart"
                    );
                }
                open_embedded(settings).await
            }
            Backend::NatsPostgres => open_nats_postgres(settings).await,
        }
    }

    pub fn command_bus(&self, settings: &Settings) -> Arc<CommandBus> {
        let defaults = BusOptions::default();
        let options = BusOptions {
            max_attempts: settings.commands.max_attempts,
            cache_capacity: std::num::NonZeroUsize::new(settings.commands.cache_capacity)
                .unwrap_or(defaults.cache_capacity),
            claim_grace_period: Duration::from_secs(settings.commands.registration_grace_secs),
            ..defaults
        };
        Arc::new(CommandBus::new(
            self.log.clone(),
            self.snapshots.clone(),
            options,
        ))
    }

    /// Returns the token-signing key: the configured one, or for the embedded store a random
    /// key generated on first start and kept in the data folder with owner-only permissions.
    pub async fn jwt_secret(&self, settings: &Settings) -> anyhow::Result<Vec<u8>> {
        if let Some(secret) = &settings.auth.jwt_secret {
            return Ok(secret.expose_secret().as_bytes().to_vec());
        }
        let data_dir = self
            .data_dir
            .as_deref()
            .context("auth.jwt_secret is required with NATS")?;
        load_or_create_secret(&data_dir.join(JWT_SECRET_FILE)).await
    }

    /// Runs projectors until `cancel` fires; `only` limits them to some projections.
    pub async fn run_projectors(
        log: Arc<dyn EventLog>,
        store: ReadModelStore,
        settings: &Settings,
        only: Option<Vec<ProjectionName>>,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let names = only.unwrap_or_else(|| ProjectionName::ALL.to_vec());
        let options = ProjectorOptions {
            batch_size: settings.projections.batch_size,
            ..ProjectorOptions::default()
        };
        run_projections(log, store, &names, options, cancel).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.store.close().await;
    }
}

async fn open_embedded(settings: &Settings) -> anyhow::Result<Backends> {
    let data_dir = settings.storage.data_dir.clone();
    tokio::fs::create_dir_all(&data_dir)
        .await
        .with_context(|| format!("failed to create data folder {}", data_dir.display()))?;
    let log = EmbeddedLog::open(&data_dir.join(EVENT_LOG_FILE))
        .await
        .with_context(|| format!("failed to open the event log in {}", data_dir.display()))?;
    let snapshots = log.snapshot_store();
    let store = ReadModelStore::sqlite(data_dir.join(READ_MODEL_FILE), store_options(settings))
        .await
        .context("failed to open the embedded read models")?;
    let positions = store.positions().await?;
    Ok(Backends {
        log: Arc::new(log),
        snapshots: Arc::new(snapshots),
        ephemeral: Arc::new(InProcessBus::new()),
        tickets: Arc::new(InMemoryTicketStore::new()),
        read_models: store.read_models(),
        progress: Arc::new(StoreProgress { positions }),
        store,
        data_dir: Some(data_dir),
    })
}

async fn open_nats_postgres(settings: &Settings) -> anyhow::Result<Backends> {
    migrate(settings).await?;
    let nats = JetStreamBackend::connect(jetstream_config(settings))
        .await
        .context("failed to connect to NATS JetStream")?;
    let url = settings
        .postgres
        .url
        .as_ref()
        .context("postgres.url is required with NATS")?;
    let store = ReadModelStore::connect_postgres(url.expose_secret(), store_options(settings))
        .await
        .context("failed to connect to PostgreSQL")?;
    let positions = store.positions().await?;
    Ok(Backends {
        log: Arc::new(nats.event_log()),
        snapshots: Arc::new(nats.snapshot_store()),
        ephemeral: Arc::new(nats.ephemeral_bus()),
        tickets: Arc::new(nats.ticket_store()),
        read_models: store.read_models(),
        progress: Arc::new(StoreProgress { positions }),
        store,
        data_dir: None,
    })
}

fn jetstream_config(settings: &Settings) -> JetStreamConfig {
    JetStreamConfig {
        url: settings.nats.url.clone().unwrap_or_default(),
        stream_name: settings.nats.stream_name.clone(),
        subject_prefix: settings.nats.subject_prefix.clone(),
        ephemeral_prefix: settings.nats.ephemeral_prefix.clone(),
        replicas: settings.nats.replicas,
        ..JetStreamConfig::default()
    }
}

fn store_options(settings: &Settings) -> StoreOptions {
    StoreOptions {
        max_connections: settings.postgres.max_connections,
        ..StoreOptions::default()
    }
}

async fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    match tokio::fs::read(path).await {
        Ok(secret) if secret.len() >= 32 => return Ok(secret),
        Ok(_) => anyhow::bail!(
            "{} contains fewer than 32 bytes; delete it to generate a new key",
            path.display()
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error).with_context(|| format!("failed to read {}", path.display()));
        }
    }
    let secret: [u8; 48] = rand::random();
    let encoded = hex::encode(secret).into_bytes();
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    use tokio::io::AsyncWriteExt;
    let mut file = options
        .open(path)
        .await
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(&encoded).await?;
    file.sync_all().await?;
    tracing::info!(path = %path.display(), "generated a token-signing key");
    Ok(encoded)
}

/// Rejects the split roles on the embedded store, whose live feed reaches only its own process.
pub fn require_split_backend(settings: &Settings, role: &str) -> anyhow::Result<()> {
    if settings.backend() == Backend::Embedded {
        anyhow::bail!(
            "the `{role}` role needs NATS and PostgreSQL: set SECURECONNECT_NATS__URL and \
             SECURECONNECT_POSTGRES__URL, or run `serve` on the embedded store"
        );
    }
    Ok(())
}

pub fn parse_projection_names(names: &[String]) -> anyhow::Result<Option<Vec<ProjectionName>>> {
    if names.is_empty() {
        return Ok(None);
    }
    let parsed = names
        .iter()
        .map(|name| name.trim().parse::<ProjectionName>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(parsed))
}

/// Runs the `project` role: projector workers only.
pub async fn run_projector_process(
    settings: &Settings,
    only: Option<Vec<ProjectionName>>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let backends = open_nats_postgres(settings).await?;
    tracing::info!(
        projections = ?only.as_deref().unwrap_or(&ProjectionName::ALL),
        "projector process started"
    );
    let outcome = Backends::run_projectors(
        backends.log.clone(),
        backends.store.clone(),
        settings,
        only,
        cancel,
    )
    .await;
    backends.close().await;
    outcome
}

/// Runs the `migrate` role: applies the PostgreSQL migrations.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let url = settings
        .postgres
        .url
        .as_ref()
        .context("`migrate` applies the PostgreSQL schema: set SECURECONNECT_POSTGRES__URL")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url.expose_secret())
        .await
        .context("failed to connect to PostgreSQL")?;
    migrate_postgres(&pool).await?;
    pool.close().await;
    tracing::info!("read-model migrations applied");
    Ok(())
}
