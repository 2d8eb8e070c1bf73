//! Settings of the read-model store and of the projector runtime, with their defaults.

use std::time::Duration;

/// Connection and timeout settings of the read-model store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The maximum number of connections the pool opens, shared by queries and projector
    /// batches.
    pub max_connections: u32,
    /// How long a query or a checkpoint read may take, including the wait for a pooled
    /// connection, before it fails with a timeout.
    pub query_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// Batching and retry settings of the projectors.
#[derive(Clone)]
pub struct ProjectorOptions {
    /// The number of events a batch takes before it stops at the next commit boundary.
    pub batch_size: usize,
    /// How long applying one batch, including its commit, may take before it is abandoned,
    /// rolled back and retried.
    pub apply_timeout: Duration,
    /// The first pause after a failed database or log call. Each further failure in a row
    /// doubles it up to `max_retry_delay`.
    pub min_retry_delay: Duration,
    pub max_retry_delay: Duration,
    /// Called inside the batch transaction after its rows are written and before it commits.
    /// An error rolls the batch back as a database failure would. Only for tests.
    #[cfg(feature = "test-hooks")]
    pub before_commit: Option<BeforeCommitHook>,
}

/// The batch that [`ProjectorOptions::before_commit`] is about to commit.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingBatch {
    pub projection: crate::ProjectionName,
    /// The checkpoint before the batch.
    pub from_position: u64,
    /// The checkpoint the batch commits.
    pub to_position: u64,
    pub events: usize,
    pub rows: usize,
}

#[cfg(feature = "test-hooks")]
pub type BeforeCommitHook =
    std::sync::Arc<dyn Fn(PendingBatch) -> Result<(), String> + Send + Sync>;

impl Default for ProjectorOptions {
    fn default() -> Self {
        ProjectorOptions {
            batch_size: 500,
            apply_timeout: Duration::from_secs(30),
            min_retry_delay: Duration::from_millis(100),
            max_retry_delay: Duration::from_secs(10),
            #[cfg(feature = "test-hooks")]
            before_commit: None,
        }
    }
}

impl std::fmt::Debug for ProjectorOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = formatter.debug_struct("ProjectorOptions");
        debug
            .field("batch_size", &self.batch_size)
            .field("apply_timeout", &self.apply_timeout)
            .field("min_retry_delay", &self.min_retry_delay)
            .field("max_retry_delay", &self.max_retry_delay);
        #[cfg(feature = "test-hooks")]
        debug.field("before_commit", &self.before_commit.is_some());
        debug.finish()
    }
}
