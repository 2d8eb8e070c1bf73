//! [`JetStreamSnapshotStore`]: aggregate snapshots in a key-value bucket that keeps only the
//! latest value of each key, one key per stream.

use async_nats::jetstream::kv;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tracing::warn;

use secureconnect_events::{LogError, Snapshot, SnapshotStore, StreamId, StreamVersion};

use crate::unavailable;

/// The snapshot store on the `<stream_name>_SNAPSHOTS` bucket. Cloning is cheap.
#[derive(Clone)]
pub struct JetStreamSnapshotStore {
    bucket: kv::Store,
}

/// The stored JSON value. Field names are part of the stored format.
#[derive(Serialize)]
struct SnapshotValueRef<'a> {
    version: StreamVersion,
    state_version: u32,
    state: &'a serde_json::Value,
}

#[derive(Deserialize)]
struct SnapshotValue {
    version: StreamVersion,
    state_version: u32,
    state: serde_json::Value,
}

impl JetStreamSnapshotStore {
    pub(crate) fn new(bucket: kv::Store) -> JetStreamSnapshotStore {
        JetStreamSnapshotStore { bucket }
    }
}

/// Returns `<aggregate_type>.<aggregate_id>`; both are valid key tokens by construction.
fn snapshot_key(stream: &StreamId) -> String {
    format!(
        "{}.{}",
        stream.aggregate_type.as_str(),
        stream.aggregate_id.as_str()
    )
}

#[async_trait]
impl SnapshotStore for JetStreamSnapshotStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, LogError> {
        let Some(value) = self
            .bucket
            .get(snapshot_key(stream))
            .await
            .map_err(|error| {
                unavailable(format!("failed to load the snapshot of {stream}"), error)
            })?
        else {
            return Ok(None);
        };
        match serde_json::from_slice::<SnapshotValue>(&value) {
            Ok(stored) => Ok(Some(Snapshot {
                version: stored.version,
                state: stored.state,
                state_version: stored.state_version,
            })),
            Err(error) => {
                // A snapshot is a cache: an unreadable one costs a replay, not correctness.
                warn!(%stream, %error, "ignoring an unreadable snapshot");
                Ok(None)
            }
        }
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<(), LogError> {
        let value = serde_json::to_vec(&SnapshotValueRef {
            version: snapshot.version,
            state_version: snapshot.state_version,
            state: &snapshot.state,
        })
        .map_err(|error| {
            unavailable(format!("failed to encode the snapshot of {stream}"), error)
        })?;
        self.bucket
            .put(snapshot_key(stream), value.into())
            .await
            .map_err(|error| {
                unavailable(format!("failed to save the snapshot of {stream}"), error)
            })?;
        Ok(())
    }
}
