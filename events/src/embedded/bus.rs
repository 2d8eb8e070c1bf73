//! [`InProcessBus`]: ephemeral frames delivered within one process, for a deployment with one
//! API node. Each topic is a tokio broadcast channel that exists while it has subscribers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::log::LogError;
use crate::realtime::EphemeralBus;

/// How many frames a subscriber may fall behind before it loses the oldest ones.
const TOPIC_CAPACITY: usize = 256;

/// An [`EphemeralBus`] within one process. Clones share the topics.
#[derive(Clone, Default)]
pub struct InProcessBus {
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
}

impl InProcessBus {
    pub fn new() -> InProcessBus {
        InProcessBus::default()
    }

    /// Returns how many topics have at least one subscriber.
    pub fn topic_count(&self) -> usize {
        lock(&self.topics).len()
    }
}

#[async_trait]
impl EphemeralBus for InProcessBus {
    async fn publish(&self, topic: &str, frame: Bytes) -> Result<(), LogError> {
        check_topic(topic)?;
        let mut topics = lock(&self.topics);
        if let Some(sender) = topics.get(topic)
            && sender.send(frame).is_err()
        {
            // The last subscriber is gone; delivery is at most once, so the frame is dropped.
            topics.remove(topic);
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError> {
        check_topic(topic)?;
        let receiver = lock(&self.topics)
            .entry(topic.to_owned())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0)
            .subscribe();
        Ok(Box::pin(Subscription {
            frames: Some(BroadcastStream::new(receiver)),
            topic: topic.to_owned(),
            topics: self.topics.clone(),
        }))
    }
}

/// Rejects topics that core NATS would treat differently, such as wildcards or empty tokens,
/// so the in-process bus accepts exactly the topics the NATS bus does.
fn check_topic(topic: &str) -> Result<(), LogError> {
    let valid = topic.split('.').all(|token| {
        !token.is_empty()
            && token
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
    });
    if valid {
        Ok(())
    } else {
        // NOTE: LogError has no variant for invalid input, so this is reported as Unavailable.
        Err(LogError::Unavailable(format!(
            "invalid topic {topic:?}: expected dot-separated tokens of ASCII letters, digits, \
             '-' or '_'"
        )))
    }
}

fn lock(
    topics: &Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Bytes>>> {
    // Every change to the map is one call, so it stays consistent if a holder panicked.
    topics
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One subscriber's frames. Dropping it removes the topic once no subscriber is left.
struct Subscription {
    /// Always `Some` until `drop` takes it, so the receiver is gone before the count is read.
    frames: Option<BroadcastStream<Bytes>>,
    topic: String,
    topics: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
}

impl Stream for Subscription {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Subscription { frames, topic, .. } = self.get_mut();
        let Some(frames) = frames.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match Pin::new(&mut *frames).poll_next(context) {
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(frame)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(skipped)))) => {
                    tracing::debug!(%topic, skipped, "ephemeral subscriber fell behind");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.frames.take());
        let mut topics = lock(&self.topics);
        if topics
            .get(&self.topic)
            .is_some_and(|sender| sender.receiver_count() == 0)
        {
            topics.remove(&self.topic);
        }
    }
}
