//! The read-model store: the database the projections write and the queries read, on
//! PostgreSQL or on an embedded SQLite file, and the checkpoint table they share.

mod postgres;
mod records;
mod sqlite;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::changes::Changes;
use crate::name::ProjectionName;
use crate::options::StoreOptions;
use crate::positions::{PositionWatches, ProjectionPositions};
use crate::queries::ReadModels;

pub(crate) use postgres::{POSITIONS_CHANNEL, PostgresStore};
pub(crate) use sqlite::SqliteStore;

/// Applies the PostgreSQL schema in `migrations/` to `pool`'s database.
pub async fn migrate_postgres(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("../migrations").run(pool).await
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("read-model database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read-model migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{operation} timed out after {after:?}")]
    TimedOut {
        operation: &'static str,
        after: Duration,
    },
    #[error("the checkpoint of projection {0} is missing from projection_checkpoints")]
    MissingCheckpoint(ProjectionName),
    /// The `before_commit` test hook failed the batch.
    #[error("batch rejected before commit: {0}")]
    RejectedBeforeCommit(String),
}

/// A projection's stored progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log position of the last commit the projection applied, or 0 before the first.
    pub position: u64,
    /// When the last applied commit was recorded in the log.
    pub last_recorded_at: Option<DateTime<Utc>>,
    /// When the checkpoint last moved, by the clock of the projector that moved it.
    pub updated_at: DateTime<Utc>,
}

/// One batch ready to be written with its checkpoint.
pub(crate) struct BatchCommit<'a> {
    pub name: ProjectionName,
    pub from_position: u64,
    pub to_position: u64,
    pub last_recorded_at: DateTime<Utc>,
    pub applied_at: DateTime<Utc>,
    pub changes: &'a Changes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplyOutcome {
    Committed,
    /// The checkpoint had moved past `from_position`, so nothing was written.
    Superseded,
}

#[derive(Clone)]
pub(crate) enum Backend {
    Postgres(PostgresStore),
    Sqlite(SqliteStore),
}

impl Backend {
    pub(crate) async fn checkpoint(&self, name: ProjectionName) -> Result<Checkpoint, StoreError> {
        match self {
            Backend::Postgres(store) => store.checkpoint(name).await,
            Backend::Sqlite(store) => store.checkpoint(name).await,
        }
    }

    /// Reads the positions of every projection that has a checkpoint row.
    pub(crate) async fn positions(&self) -> Result<Vec<(ProjectionName, u64)>, StoreError> {
        match self {
            Backend::Postgres(store) => store.positions().await,
            Backend::Sqlite(store) => store.positions().await,
        }
    }
}

/// The read models on one database: queries through [`ReadModelStore::read_models`], the
/// writes of the projector runtime, and projection positions.
///
/// Cloning is cheap and shares the pool and the position watches.
#[derive(Clone)]
pub struct ReadModelStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    backend: Backend,
    options: StoreOptions,
    /// The latest committed position of each projection. The runtime raises them after each
    /// commit in this process, and the [`ProjectionPositions`] task raises them for commits of
    /// other processes.
    watches: Arc<PositionWatches>,
    /// Started by the first call to [`ReadModelStore::positions`] and dropped with the store.
    positions: OnceCell<ProjectionPositions>,
}

impl ReadModelStore {
    /// Connects to PostgreSQL with a pool of `options.max_connections`. The schema must
    /// already be applied with [`migrate_postgres`].
    pub async fn connect_postgres(
        url: &str,
        options: StoreOptions,
    ) -> Result<ReadModelStore, StoreError> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.query_timeout)
            .connect(url)
            .await?;
        Ok(ReadModelStore::postgres(pool, options))
    }

    /// Uses an existing PostgreSQL pool, whose own size applies instead of
    /// `options.max_connections`. The schema must already be applied with
    /// [`migrate_postgres`].
    pub fn postgres(pool: PgPool, options: StoreOptions) -> ReadModelStore {
        let backend = Backend::Postgres(PostgresStore::new(pool, options.query_timeout));
        ReadModelStore::new(backend, options)
    }

    /// Opens the embedded store at `path`, creating the file and applying its schema when
    /// needed. Keep it apart from the event log's file.
    pub async fn sqlite(
        path: impl AsRef<Path>,
        options: StoreOptions,
    ) -> Result<ReadModelStore, StoreError> {
        let store = SqliteStore::open(path.as_ref(), &options).await?;
        Ok(ReadModelStore::new(Backend::Sqlite(store), options))
    }

    fn new(backend: Backend, options: StoreOptions) -> ReadModelStore {
        ReadModelStore {
            inner: Arc::new(StoreInner {
                backend,
                options,
                watches: Arc::new(PositionWatches::new()),
                positions: OnceCell::new(),
            }),
        }
    }

    /// Returns the queries the API runs.
    pub fn read_models(&self) -> Arc<dyn ReadModels> {
        match &self.inner.backend {
            Backend::Postgres(store) => Arc::new(store.clone()),
            Backend::Sqlite(store) => Arc::new(store.clone()),
        }
    }

    /// Returns the committed position of every projection, kept current by a background task that
    /// follows commits from every process. The first call reads the checkpoints and starts
    /// the task. Later calls return the same handle.
    pub async fn positions(&self) -> Result<ProjectionPositions, StoreError> {
        self.inner
            .positions
            .get_or_try_init(|| {
                ProjectionPositions::start(
                    self.inner.backend.clone(),
                    Arc::clone(&self.inner.watches),
                )
            })
            .await
            .cloned()
    }

    /// Reads the stored checkpoint of `name`, creating it at position 0 when it is missing.
    pub async fn checkpoint(&self, name: ProjectionName) -> Result<Checkpoint, StoreError> {
        self.inner.backend.checkpoint(name).await
    }

    /// `postgres` or `sqlite`, for logs and metrics.
    pub fn backend_name(&self) -> &'static str {
        match &self.inner.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// Closes the pool: waits for checked-out connections to return and closes them all.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Postgres(store) => store.close().await,
            Backend::Sqlite(store) => store.close().await,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    /// Writes a batch and advances its checkpoint in one transaction, then raises the
    /// projection's position watch. `before_commit` runs after the writes, inside the
    /// transaction.
    pub(crate) async fn apply(
        &self,
        batch: &BatchCommit<'_>,
        before_commit: &(dyn Fn() -> Result<(), String> + Send + Sync),
    ) -> Result<ApplyOutcome, StoreError> {
        let outcome = match &self.inner.backend {
            Backend::Postgres(store) => store.apply(batch, before_commit).await?,
            Backend::Sqlite(store) => store.apply(batch, before_commit).await?,
        };
        if outcome == ApplyOutcome::Committed {
            self.inner.watches.raise(batch.name, batch.to_position);
        }
        Ok(outcome)
    }
}

/// Runs `future` under `limit`, turning expiry into [`StoreError::TimedOut`].
pub(crate) async fn within<T, E>(
    limit: Duration,
    operation: &'static str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, StoreError>
where
    StoreError: From<E>,
{
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(StoreError::from),
        Err(_) => Err(StoreError::TimedOut {
            operation,
            after: limit,
        }),
    }
}
