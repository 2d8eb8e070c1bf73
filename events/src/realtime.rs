//! Traits for what crosses API nodes without entering the durable log: ephemeral frames such
//! as typing indicators, and single-use tickets for WebSocket logins. JetStream and core NATS
//! implement them for clusters; [`crate::embedded`] implements them in process.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::log::LogError;

/// Fire-and-forget publish/subscribe on topics such as `chat.<conversation_id>`. Delivery is
/// at most once and only to subscribers that exist when the frame is published.
#[async_trait]
pub trait EphemeralBus: Send + Sync + 'static {
    /// Publishes one frame on a topic. Topics are dot-separated tokens of letters, digits,
    /// `-` and `_`.
    async fn publish(&self, topic: &str, frame: Bytes) -> Result<(), LogError>;

    /// Receives every frame published on `topic` from now on, until the stream is dropped.
    async fn subscribe(&self, topic: &str) -> Result<BoxStream<'static, Bytes>, LogError>;
}

/// A store of single-use, short-lived tokens shared by all API nodes.
#[async_trait]
pub trait TicketStore: Send + Sync + 'static {
    /// Stores `value` under the new id `ticket_id` for `ttl`.
    async fn issue(&self, ticket_id: &str, value: Bytes, ttl: Duration) -> Result<(), LogError>;

    /// Removes the ticket and returns its value, or `None` when it was never issued, has
    /// expired or was already redeemed. Of two concurrent redemptions at most one succeeds.
    async fn redeem(&self, ticket_id: &str) -> Result<Option<Bytes>, LogError>;
}
