//! The projector runtime: one task per projection that follows the event log from its
//! checkpoint and applies the events in batches, each in one transaction with its checkpoint.
//!
//! A batch advances the checkpoint only from the position it started at. If that updates no
//! row, another worker applied the batch first: this one rolls back, re-reads the checkpoint
//! and reopens the feed there. A crash at any point therefore neither loses nor repeats a row.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use secureconnect_events::{EventEnvelope, EventLog, FeedFilter, FeedStart};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::BatchReader;
use crate::changes::{Changes, UndecodableEvent};
use crate::name::ProjectionName;
use crate::options::ProjectorOptions;
use crate::status::{ProjectionStatus, StatusError, read_status, seconds_between};
use crate::store::{ApplyOutcome, BatchCommit, ReadModelStore, StoreError, within};

/// Spawns one projector per name in `names` and returns once all of them have stopped, which
/// they do when `cancel` fires or, one by one, on an event they cannot decode.
pub async fn run_projections(
    log: Arc<dyn EventLog>,
    store: ReadModelStore,
    names: &[ProjectionName],
    options: ProjectorOptions,
    cancel: CancellationToken,
) -> Result<(), ProjectionsStopped> {
    ProjectorRuntime::new(log, store, options)
        .run(names, cancel)
        .await
}

/// Projections that stopped on an error rather than on cancellation.
#[derive(Debug, thiserror::Error)]
#[error("projections stopped on errors: {}", describe_failures(.failures))]
pub struct ProjectionsStopped {
    pub failures: Vec<(ProjectionName, String)>,
}

fn describe_failures(failures: &[(ProjectionName, String)]) -> String {
    failures
        .iter()
        .map(|(name, reason)| format!("{name}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The last batch a projector of this runtime committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedBatch {
    /// The checkpoint before the batch.
    pub from_position: u64,
    /// The checkpoint after the batch: the position of its last commit.
    pub to_position: u64,
    pub events: usize,
    pub rows: usize,
    /// When the batch's last event was recorded in the log.
    pub last_recorded_at: DateTime<Utc>,
    pub committed_at: DateTime<Utc>,
    /// `committed_at - last_recorded_at` in seconds.
    pub apply_lag_seconds: f64,
}

/// The progress of one projection that a runtime keeps between status reads.
#[derive(Debug, Clone, Default)]
struct Progress {
    last_batch: Option<AppliedBatch>,
    failure: Option<String>,
}

/// Runs projectors against one log and one store. Cloning is cheap and shares the progress
/// that [`ProjectorRuntime::status`] reports.
#[derive(Clone)]
pub struct ProjectorRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    log: Arc<dyn EventLog>,
    store: ReadModelStore,
    options: ProjectorOptions,
    /// Indexed by [`ProjectionName::index`] and written by each projector after its commits.
    progress: [Mutex<Progress>; 3],
}

/// The end of one attempt by a projector to follow the log from its checkpoint.
enum Attempt {
    /// Cancellation: return.
    Cancelled,
    /// Another worker moved the checkpoint: read it again and reopen the feed at once.
    Superseded,
    /// A database or log call failed: wait, then read the checkpoint again and reopen the
    /// feed.
    Failed {
        operation: &'static str,
        error: String,
        /// Whether a batch was committed since the attempt began, which resets the delay.
        committed: bool,
    },
}

impl ProjectorRuntime {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: ReadModelStore,
        options: ProjectorOptions,
    ) -> ProjectorRuntime {
        ProjectorRuntime {
            inner: Arc::new(RuntimeInner {
                log,
                store,
                options,
                progress: Default::default(),
            }),
        }
    }

    /// Spawns one projector per distinct name and waits until all have stopped.
    pub async fn run(
        &self,
        names: &[ProjectionName],
        cancel: CancellationToken,
    ) -> Result<(), ProjectionsStopped> {
        let mut names = names.to_vec();
        names.sort();
        names.dedup();
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let runtime = self.clone();
                let cancel = cancel.clone();
                (
                    name,
                    tokio::spawn(async move { runtime.run_projection(name, cancel).await }),
                )
            })
            .collect();

        let mut failures = Vec::new();
        for (name, task) in tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => failures.push((name, error.to_string())),
                Err(join_error) => {
                    let reason = format!("the projector task failed: {join_error}");
                    tracing::error!(projection = %name, "{reason}");
                    self.record_failure(name, reason.clone());
                    failures.push((name, reason));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ProjectionsStopped { failures })
        }
    }

    /// Runs one projector until `cancel` fires, or until an event it cannot decode, which it
    /// logs and returns. Database and log failures are logged and retried with growing
    /// delays. On cancellation a batch already taken from the feed is still committed, unless
    /// committing it fails.
    pub async fn run_projection(
        &self,
        name: ProjectionName,
        cancel: CancellationToken,
    ) -> Result<(), UndecodableEvent> {
        tracing::info!(projection = %name, backend = self.inner.store.backend_name(), "projector started");
        let options = &self.inner.options;
        let mut delay = options.min_retry_delay;
        let mut failures_in_a_row: u32 = 0;
        loop {
            match self.follow_log(name, &cancel).await {
                Ok(Attempt::Cancelled) => break,
                Ok(Attempt::Superseded) => {
                    delay = options.min_retry_delay;
                    failures_in_a_row = 0;
                }
                Ok(Attempt::Failed {
                    operation,
                    error,
                    committed,
                }) => {
                    if committed {
                        delay = options.min_retry_delay;
                        failures_in_a_row = 0;
                    }
                    failures_in_a_row += 1;
                    tracing::warn!(
                        projection = %name,
                        %error,
                        failures_in_a_row,
                        retry_in = ?delay,
                        "{operation} failed, retrying"
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(options.max_retry_delay);
                }
                Err(error) => {
                    tracing::error!(
                        projection = %name,
                        event_id = %error.event_id,
                        position = error.position,
                        %error,
                        "projector stopped on an event it cannot decode"
                    );
                    self.record_failure(name, error.to_string());
                    return Err(error);
                }
            }
        }
        tracing::info!(projection = %name, "projector stopped");
        Ok(())
    }

    /// Reads the checkpoint, opens the feed after it, and applies batches until something
    /// requires starting over.
    async fn follow_log(
        &self,
        name: ProjectionName,
        cancel: &CancellationToken,
    ) -> Result<Attempt, UndecodableEvent> {
        let store = &self.inner.store;
        let options = &self.inner.options;
        let mut committed = false;
        let failed = |operation: &'static str, error: &dyn std::fmt::Display, committed: bool| {
            Ok(Attempt::Failed {
                operation,
                error: error.to_string(),
                committed,
            })
        };

        let mut position = match store.checkpoint(name).await {
            Ok(checkpoint) => checkpoint.position,
            Err(error) => return failed("reading the projection checkpoint", &error, committed),
        };
        let feed_start = FeedStart::AfterPosition(position);
        let opened = tokio::select! {
            _ = cancel.cancelled() => return Ok(Attempt::Cancelled),
            opened = tokio::time::timeout(
                options.apply_timeout,
                self.inner.log.feed(feed_start, FeedFilter::All),
            ) => opened,
        };
        let mut reader = match opened {
            Ok(Ok(feed)) => BatchReader::new(feed),
            Ok(Err(error)) => return failed("opening the event feed", &error, committed),
            Err(_) => {
                let error = format!("timed out after {:?}", options.apply_timeout);
                return failed("opening the event feed", &error, committed);
            }
        };
        tracing::debug!(projection = %name, position, "following the event log");

        loop {
            let waited = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(Attempt::Cancelled),
                waited = reader.wait_for_event() => waited,
            };
            let batch = match waited {
                Ok(()) => reader.take_batch(options.batch_size).await,
                Err(error) => Err(error),
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(error) => return failed("reading the event feed", &error, committed),
            };

            match self.apply_batch(name, position, &batch).await? {
                Ok((ApplyOutcome::Committed, to_position)) => {
                    position = to_position;
                    committed = true;
                }
                Ok((ApplyOutcome::Superseded, _)) => {
                    tracing::debug!(
                        projection = %name,
                        position,
                        "another worker advanced the checkpoint, so reading it again"
                    );
                    return Ok(Attempt::Superseded);
                }
                Err(error) => return failed("applying a projection batch", &error, committed),
            }
            if cancel.is_cancelled() {
                return Ok(Attempt::Cancelled);
            }
        }
    }

    /// Decodes and commits one batch that starts after `from_position`. The outer error stops
    /// the projector, and the inner one is retried.
    async fn apply_batch(
        &self,
        name: ProjectionName,
        from_position: u64,
        batch: &[EventEnvelope],
    ) -> Result<Result<(ApplyOutcome, u64), StoreError>, UndecodableEvent> {
        let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
            return Ok(Ok((ApplyOutcome::Committed, from_position)));
        };
        // A feed that split a commit across two batches would repeat the position here, and
        // the checkpoint must still never move back.
        let to_position = last.position.max(from_position);
        let span = tracing::debug_span!(
            "apply projection batch",
            projection = %name,
            first_position = first.position,
            last_position = to_position,
            events = batch.len(),
        );
        let changes = span.in_scope(|| Changes::collect(name, batch))?;

        let applied_at = Utc::now();
        let commit = BatchCommit {
            name,
            from_position,
            to_position,
            last_recorded_at: last.recorded_at,
            applied_at,
            changes: &changes,
        };
        let before_commit =
            self.before_commit_check(name, from_position, to_position, batch, &changes);
        let outcome = within(
            self.inner.options.apply_timeout,
            "applying a projection batch",
            self.inner.store.apply(&commit, &before_commit),
        )
        .instrument(span.clone())
        .await;

        if let Ok(ApplyOutcome::Committed) = outcome {
            let committed_at = Utc::now();
            let applied = AppliedBatch {
                from_position,
                to_position,
                events: batch.len(),
                rows: changes.row_count(),
                last_recorded_at: last.recorded_at,
                committed_at,
                apply_lag_seconds: seconds_between(last.recorded_at, committed_at),
            };
            span.in_scope(|| {
                tracing::debug!(
                    rows = applied.rows,
                    apply_lag_seconds = applied.apply_lag_seconds,
                    "committed projection batch"
                )
            });
            self.progress(name).last_batch = Some(applied);
        }
        Ok(outcome.map(|outcome| (outcome, to_position)))
    }

    #[cfg(feature = "test-hooks")]
    fn before_commit_check(
        &self,
        projection: ProjectionName,
        from_position: u64,
        to_position: u64,
        batch: &[EventEnvelope],
        changes: &Changes,
    ) -> impl Fn() -> Result<(), String> + Send + Sync + use<> {
        let hook = self.inner.options.before_commit.clone();
        let pending = crate::options::PendingBatch {
            projection,
            from_position,
            to_position,
            events: batch.len(),
            rows: changes.row_count(),
        };
        move || hook.as_ref().map_or(Ok(()), |hook| hook(pending))
    }

    #[cfg(not(feature = "test-hooks"))]
    fn before_commit_check(
        &self,
        _projection: ProjectionName,
        _from_position: u64,
        _to_position: u64,
        _batch: &[EventEnvelope],
        _changes: &Changes,
    ) -> impl Fn() -> Result<(), String> + Send + Sync + use<> {
        || Ok(())
    }

    fn progress(&self, name: ProjectionName) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while holding this lock leaves plain values behind, which stay valid.
        self.inner.progress[name.index()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_failure(&self, name: ProjectionName, reason: String) {
        self.progress(name).failure = Some(reason);
    }

    /// Returns the last batch this runtime committed for `name`.
    pub fn last_batch(&self, name: ProjectionName) -> Option<AppliedBatch> {
        self.progress(name).last_batch.clone()
    }

    /// Reads the progress and lag of every projection, with the failure of any projection
    /// this runtime stopped.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, StatusError> {
        let mut statuses = read_status(
            self.inner.store.backend(),
            self.inner.log.as_ref(),
            &ProjectionName::ALL,
        )
        .await?;
        for status in &mut statuses {
            status.failure = self.progress(status.name).failure.clone();
        }
        Ok(statuses)
    }

    pub fn store(&self) -> &ReadModelStore {
        &self.inner.store
    }
}
