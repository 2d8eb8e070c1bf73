//! Projection progress and lag against the log's head, for `/ready`, metrics and benchmarks.

use chrono::{DateTime, Utc};
use secureconnect_events::{EventLog, LogError};
use serde::Serialize;

use crate::name::ProjectionName;
use crate::store::{Backend, StoreError};

/// How far one projection is behind the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    pub name: ProjectionName,
    /// The committed checkpoint: the log position of the last commit applied.
    pub position: u64,
    /// The log's last position when the status was read.
    pub head_position: u64,
    /// `head_position - position`: the distance in log positions. Positions number commits,
    /// not events, so a commit of several events counts once.
    pub lag_events: u64,
    /// When the last applied commit was recorded in the log.
    pub last_applied_recorded_at: Option<DateTime<Utc>>,
    /// How long the oldest commit not yet applied has waited since the log recorded it. It
    /// is 0 when the projection has caught up.
    pub lag_seconds: f64,
    /// For the last committed batch: the time it began committing minus the time its last
    /// event was recorded.
    pub last_batch_apply_lag_seconds: Option<f64>,
    /// Why the projection stopped, when the runtime reporting it stopped it on an event it
    /// cannot apply. Always `None` in a status read from the store alone.
    pub failure: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the event log's head failed: {0}")]
    Log(#[from] LogError),
}

/// Reads the checkpoints of `names` and compares them with `log`'s head.
pub(crate) async fn read_status(
    backend: &Backend,
    log: &dyn EventLog,
    names: &[ProjectionName],
) -> Result<Vec<ProjectionStatus>, StatusError> {
    let head_position = log.head_position().await?;
    let now = Utc::now();
    let mut statuses = Vec::with_capacity(names.len());
    for &name in names {
        let checkpoint = backend.checkpoint(name).await?;
        let lag_seconds = if checkpoint.position >= head_position {
            0.0
        } else {
            // The first commit after the checkpoint is the one that has waited longest.
            let oldest_unapplied = log.read_all(checkpoint.position, 1).await?;
            oldest_unapplied
                .first()
                .map_or(0.0, |event| seconds_between(event.recorded_at, now))
        };
        statuses.push(ProjectionStatus {
            name,
            position: checkpoint.position,
            head_position,
            lag_events: head_position.saturating_sub(checkpoint.position),
            last_applied_recorded_at: checkpoint.last_recorded_at,
            lag_seconds,
            last_batch_apply_lag_seconds: checkpoint
                .last_recorded_at
                .map(|recorded_at| seconds_between(recorded_at, checkpoint.updated_at)),
            failure: None,
        });
    }
    Ok(statuses)
}

/// `later - earlier` in seconds, never negative, since the clocks of different machines may
/// disagree slightly.
pub(crate) fn seconds_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    let elapsed = later.signed_duration_since(earlier);
    (elapsed.num_microseconds().unwrap_or(i64::MAX) as f64 / 1_000_000.0).max(0.0)
}
