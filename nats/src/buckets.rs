//! Opening the key-value buckets of snapshots and tickets, creating them when missing.
//!
//! A bucket is created through its backing stream rather than `create_key_value`, because
//! async-nats 0.52 first reads the account info, and the reply of a NATS 2.9 server lacks
//! fields that version requires (`reserved_memory`, `reserved_storage`), so that call fails
//! there. The stream settings below are those async-nats itself uses for a bucket.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tracing::{debug, info};

use secureconnect_events::LogError;

use crate::unavailable;

/// The settings of one bucket with history 1: only the latest value of a key is kept.
pub(crate) struct BucketSpec {
    pub(crate) name: String,
    pub(crate) description: &'static str,
    /// The age after which the server removes an entry; zero keeps entries forever.
    pub(crate) max_age: Duration,
    pub(crate) replicas: usize,
}

impl BucketSpec {
    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: format!("KV_{}", self.name),
            description: Some(self.description.to_owned()),
            subjects: vec![format!("$KV.{}.>", self.name)],
            max_messages_per_subject: 1,
            max_messages: -1,
            max_bytes: -1,
            max_message_size: -1,
            max_age: self.max_age,
            storage: stream::StorageType::File,
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            deny_purge: false,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        }
    }
}

/// Opens a bucket, creating it when it is missing.
pub(crate) async fn open_bucket(
    jetstream: &jetstream::Context,
    spec: BucketSpec,
) -> Result<kv::Store, LogError> {
    if let Ok(store) = jetstream.get_key_value(&spec.name).await {
        return Ok(store);
    }
    match jetstream.create_stream(spec.stream_config()).await {
        Ok(_) => info!(bucket = %spec.name, "created a key-value bucket"),
        // Another node may have created it in the meantime, so the read below decides.
        Err(error) => debug!(bucket = %spec.name, %error, "creating the bucket failed"),
    }
    jetstream
        .get_key_value(&spec.name)
        .await
        .map_err(|error| unavailable(format!("failed to open bucket {}", spec.name), error))
}
