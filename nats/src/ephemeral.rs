//! [`NatsEphemeralBus`]: ephemeral frames over core NATS publish/subscribe on
//! `<ephemeral_prefix>.<topic>`, outside the event stream's subjects, so nothing is stored.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use secureconnect_events::{EphemeralBus, LogError};

use crate::config::is_literal_subject;
use crate::unavailable;

/// The ephemeral bus on the backend's NATS connection. Cloning is cheap.
#[derive(Clone)]
pub struct NatsEphemeralBus {
    client: async_nats::Client,
    prefix: String,
    request_timeout: Duration,
}

impl NatsEphemeralBus {
    pub(crate) fn new(
        client: async_nats::Client,
        prefix: String,
        request_timeout: Duration,
    ) -> NatsEphemeralBus {
        NatsEphemeralBus {
            client,
            prefix,
            request_timeout,
        }
    }

    /// Returns the subject of a topic. Wildcards and empty tokens are rejected, so a
    /// subscriber cannot widen its subscription beyond one topic.
    fn subject(&self, topic: &str) -> Result<String, LogError> {
        if !is_literal_subject(topic) {
            return Err(LogError::Unavailable(format!(
                "invalid ephemeral topic {topic:?}: expected dot-separated tokens of ASCII \
                 letters, digits, '-' or '_'"
            )));
        }
        Ok(format!("{}.{topic}", self.prefix))
    }

    /// Sends a message to a fresh inbox of this connection and waits for it to come back.
    /// The server handles one connection's operations in order, so once the probe returns,
    /// every subscription sent before it is registered. `Client::flush` only writes the
    /// socket and gives no such guarantee.
    async fn round_trip(&self) -> Result<(), async_nats::Error> {
        let probe = self.client.new_inbox();
        let mut echo = self.client.subscribe(probe.clone()).await?;
        self.client.publish(probe, Bytes::new()).await?;
        match echo.next().await {
            Some(_) => Ok(()),
            None => Err("the connection closed before the probe returned".into()),
        }
    }
}

#[async_trait]
impl EphemeralBus for NatsEphemeralBus {
    async fn publish(&self, topic: &str, frame: Bytes) -> Result<(), LogError> {
        let subject = self.subject(topic)?;
        self.client
            .publish(subject, frame)
            .await
            .map_err(|error| unavailable(format!("failed to publish on topic {topic}"), error))
    }

    /// Subscribes and waits until the server has registered the subscription, so every frame
    /// published after this returns is delivered.
    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError> {
        let subject = self.subject(topic)?;
        let subscriber =
            self.client.subscribe(subject).await.map_err(|error| {
                unavailable(format!("failed to subscribe to topic {topic}"), error)
            })?;
        match tokio::time::timeout(self.request_timeout, self.round_trip()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                return Err(unavailable(
                    format!("failed to register the subscription to topic {topic}"),
                    error,
                ));
            }
            Err(_) => {
                return Err(LogError::Unavailable(format!(
                    "registering the subscription to topic {topic} timed out after {:?}",
                    self.request_timeout
                )));
            }
        }
        Ok(subscriber.map(|message| message.payload).boxed())
    }
}
