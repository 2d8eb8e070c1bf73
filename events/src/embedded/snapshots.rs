//! [`EmbeddedSnapshotStore`]: aggregate snapshots in the `snapshots` table of the embedded
//! log's file, one row per stream, replaced on every save.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::log::Shared;
use super::rows::to_unsigned;
use super::schema::query_failed;
use super::writer::WriteRequest;
use crate::log::{LogError, Snapshot, SnapshotStore};
use crate::stream::{StreamId, StreamVersion};

/// The snapshot store of an [`super::EmbeddedLog`], created with
/// [`super::EmbeddedLog::snapshot_store`]. Saves go through the log's writer task, so they
/// share its transactions instead of competing with it for SQLite's write lock.
#[derive(Clone)]
pub struct EmbeddedSnapshotStore {
    shared: Arc<Shared>,
}

impl EmbeddedSnapshotStore {
    pub(crate) fn new(shared: Arc<Shared>) -> EmbeddedSnapshotStore {
        EmbeddedSnapshotStore { shared }
    }
}

impl std::fmt::Debug for EmbeddedSnapshotStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmbeddedSnapshotStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SnapshotStore for EmbeddedSnapshotStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, LogError> {
        let row: Option<(i64, i64, i64, String)> = sqlx::query_as(
            "SELECT sequence, position, state_version, state FROM snapshots \
             WHERE aggregate_type = ?1 AND aggregate_id = ?2",
        )
        .bind(stream.aggregate_type.as_str())
        .bind(stream.aggregate_id.as_str())
        .fetch_optional(&self.shared.readers)
        .await
        .map_err(|error| query_failed(&format!("load the snapshot of {stream}"), error))?;
        let Some((sequence, position, state_version, state)) = row else {
            return Ok(None);
        };

        // A snapshot that cannot be read is a cache miss: the aggregate is replayed instead.
        let state = match serde_json::from_str(&state) {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%stream, %error, "ignoring an unreadable snapshot");
                return Ok(None);
            }
        };
        let Ok(state_version) = u32::try_from(state_version) else {
            tracing::warn!(
                %stream,
                state_version,
                "ignoring a snapshot with an invalid state version"
            );
            return Ok(None);
        };
        Ok(Some(Snapshot {
            version: StreamVersion {
                sequence: to_unsigned(sequence, position, "snapshot sequence")?,
                position: to_unsigned(position, position, "snapshot position")?,
            },
            state,
            state_version,
        }))
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), LogError> {
        let state = serde_json::to_string(&snapshot.state).map_err(|error| {
            LogError::Unavailable(format!(
                "failed to encode the snapshot of {stream}: {error}"
            ))
        })?;
        let (reply, result) = oneshot::channel();
        let request = WriteRequest::SaveSnapshot {
            stream: stream.clone(),
            version: snapshot.version,
            state_version: snapshot.state_version,
            state,
            reply,
        };
        if self.shared.requests.send(request).await.is_err() {
            return Err(self.shared.closed());
        }
        result.await.unwrap_or_else(|_| Err(self.shared.closed()))
    }
}
