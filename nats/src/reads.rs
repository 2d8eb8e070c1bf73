//! Bounded reads of the event stream through short-lived ordered pull consumers: the reader
//! behind `read_stream` and `read_all`. Each read creates its own consumer at a start
//! sequence, takes messages until the caller has what it needs, and deletes the consumer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use tracing::debug;
use uuid::Uuid;

use secureconnect_events::LogError;

use crate::backend::Shared;
use crate::commit::StoredCommit;
use crate::unavailable;

/// An ordered pull consumer read message by message. Dropping it deletes the consumer in the
/// background. A consumer the client library recreated under another name is left to the
/// server, which removes it after 30 seconds without pull requests.
pub(crate) struct OrderedRead {
    shared: Arc<Shared>,
    /// The name given at creation, which the drop deletes.
    consumer_name: String,
    /// The message stream of the consumer. It pulls at most `max_batch` messages ahead.
    messages: pull::Ordered,
}

impl OrderedRead {
    /// Creates a consumer that starts at stream sequence `start_sequence`, filtered to
    /// `filter_subject` when one is given. `max_batch` caps the messages of one pull request,
    /// so a read that stops early does not fetch far past its end.
    pub(crate) async fn open(
        shared: &Arc<Shared>,
        filter_subject: Option<String>,
        start_sequence: u64,
        max_batch: usize,
    ) -> Result<OrderedRead, LogError> {
        let consumer_name = format!("sc_read_{}", Uuid::new_v4().simple());
        let consumer = shared
            .stream
            .create_consumer(pull::OrderedConfig {
                name: Some(consumer_name.clone()),
                filter_subject: filter_subject.unwrap_or_default(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence },
                max_batch: i64::try_from(max_batch).unwrap_or(i64::MAX),
                ..Default::default()
            })
            .await
            .map_err(|error| unavailable("failed to create a reading consumer", error))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|error| unavailable("failed to start reading the event stream", error))?;
        Ok(OrderedRead {
            shared: shared.clone(),
            consumer_name,
            messages,
        })
    }

    /// Returns the next commit. Fails with [`LogError::Unavailable`] when none arrives within
    /// the request timeout, so callers ask only for commits they know exist.
    pub(crate) async fn next_commit(&mut self) -> Result<StoredCommit, LogError> {
        let timeout: Duration = self.shared.config.request_timeout;
        let message = match tokio::time::timeout(timeout, self.messages.next()).await {
            Err(_) => {
                return Err(LogError::Unavailable(format!(
                    "reading the event stream timed out after {timeout:?} without a message"
                )));
            }
            Ok(None) => {
                return Err(LogError::Unavailable(
                    "the NATS connection closed while reading the event stream".to_owned(),
                ));
            }
            Ok(Some(Err(error))) => {
                return Err(unavailable("failed to read the event stream", error));
            }
            Ok(Some(Ok(message))) => message,
        };
        let position = message
            .info()
            .map_err(|error| unavailable("a delivered message has no stream sequence", error))?
            .stream_sequence;
        StoredCommit::decode(
            &self.shared.config.subject_prefix,
            message.subject.as_str(),
            position,
            &message.payload,
        )
    }
}

impl Drop for OrderedRead {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let jetstream = self.shared.jetstream.clone();
        let stream_name = self.shared.config.stream_name.clone();
        let consumer_name = std::mem::take(&mut self.consumer_name);
        runtime.spawn(async move {
            if let Err(error) = jetstream
                .delete_consumer_from_stream(&consumer_name, &stream_name)
                .await
            {
                debug!(%consumer_name, %error, "failed to delete a reading consumer");
            }
        });
    }
}
