//! One open chat socket after the upgrade. It forwards the conversation's messages from the
//! hub and other sockets' ephemeral frames to the client, publishes the client's `typing` and
//! `read` frames and its presence, keeps the connection alive with pings, and closes with a
//! code and reason that name the client's next step.
//!
//! Two tasks share the socket: this one reads and decides, and a writer owns the sending half
//! behind a bounded queue, so a slow client never blocks reading its pongs or noticing
//! shutdown, and a client that falls too far behind is closed instead of buffered without end.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use chrono::Utc;
use futures::stream::{BoxStream, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use secureconnect_events::LogError;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::Instrument;
use uuid::Uuid;

use super::chat::SocketUser;
use super::frames::{ChatFrame, ClientFrame, EphemeralKind, ErrorFrame, TaggedFrame};
use super::hub::ChatHub;
use crate::app::AppState;
use crate::config::WebSocketSettings;

/// How often an open socket checks that its session has not been revoked.
const REVOCATION_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long one write to the client may take before the connection counts as dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server waits for the client's reply to a close frame.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The limits of one socket, taken from `websocket` settings.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub send_queue_frames: usize,
}

impl SocketLimits {
    /// Caps the ping interval at half the idle timeout, because a ping period as long as the
    /// idle timeout would close a client that replies to every ping.
    pub fn from_settings(settings: &WebSocketSettings) -> SocketLimits {
        let idle_timeout = Duration::from_secs(settings.idle_timeout_secs.max(2));
        let ping_interval =
            Duration::from_secs(settings.ping_interval_secs.max(1)).min(idle_timeout / 2);
        SocketLimits {
            max_frame_bytes: settings.max_frame_bytes.max(1),
            ping_interval,
            idle_timeout,
            send_queue_frames: settings.send_queue_frames.max(1),
        }
    }
}

/// A receiver of one hub room. Dropping it releases the room, also when the upgrade fails and
/// the socket never runs.
pub struct RoomSubscription {
    hub: Arc<ChatHub>,
    conversation_id: Uuid,
    /// `Some` until `drop` takes it, so the room has no receiver left when it is released.
    receiver: Option<broadcast::Receiver<Utf8Bytes>>,
}

impl RoomSubscription {
    pub fn new(hub: Arc<ChatHub>, conversation_id: Uuid) -> RoomSubscription {
        let receiver = hub.subscribe(conversation_id);
        RoomSubscription {
            hub,
            conversation_id,
            receiver: Some(receiver),
        }
    }

    async fn recv(&mut self) -> Result<Utf8Bytes, RecvError> {
        self.receiver
            .as_mut()
            .expect("the receiver is taken only on drop")
            .recv()
            .await
    }
}

impl Drop for RoomSubscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        self.hub.release(self.conversation_id);
    }
}

/// The reason a socket stopped, which decides the close frame the server sends, if any.
#[derive(Debug)]
enum Ending {
    /// The client sent a close frame, which tungstenite replies to.
    ClientClosed,
    /// The connection ended without a close frame.
    Disconnected,
    FrameTooLarge,
    ReadFailed(axum::Error),
    /// The writer stopped: a write failed or timed out, so the connection is unusable.
    WriteFailed,
    IdleTimeout,
    ShuttingDown,
    SessionRevoked,
    /// The hub dropped this many messages before the socket read them.
    Lagged(u64),
    SendQueueFull,
    HubClosed,
    EphemeralFeedEnded,
}

impl Ending {
    /// Builds the close frame for this ending, if any. Reasons stay within the 123 bytes that a
    /// close frame's payload leaves after the code.
    fn close_frame(&self, limits: &SocketLimits) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Ending::ClientClosed
            | Ending::Disconnected
            | Ending::ReadFailed(_)
            | Ending::WriteFailed => return None,
            Ending::FrameTooLarge => (
                close_code::SIZE,
                format!("frame or message exceeds {} bytes", limits.max_frame_bytes),
            ),
            Ending::IdleTimeout => (
                close_code::AWAY,
                format!(
                    "no frame received for {} seconds",
                    limits.idle_timeout.as_secs()
                ),
            ),
            Ending::ShuttingDown => (
                close_code::AWAY,
                "server is shutting down; reconnect".to_owned(),
            ),
            Ending::SessionRevoked => (
                close_code::POLICY,
                "session has been revoked; log in again".to_owned(),
            ),
            Ending::Lagged(missed) => (
                close_code::AGAIN,
                format!("missed {missed} messages; reload the history over REST and reconnect"),
            ),
            Ending::SendQueueFull => (
                close_code::AGAIN,
                "too many frames queued; reload the history over REST and reconnect".to_owned(),
            ),
            Ending::HubClosed => (
                close_code::ERROR,
                "message feed stopped; reconnect".to_owned(),
            ),
            Ending::EphemeralFeedEnded => (
                close_code::AGAIN,
                "typing and presence feed stopped; reconnect".to_owned(),
            ),
        };
        Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })
    }
}

/// The sending side of the writer's queue. `queue` never waits: a full queue returns
/// `SendQueueFull`, which ends the socket.
struct Outgoing {
    frames: mpsc::Sender<Message>,
}

impl Outgoing {
    fn queue(&self, message: Message) -> Result<(), Ending> {
        self.frames.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Ending::SendQueueFull,
            mpsc::error::TrySendError::Closed(_) => Ending::WriteFailed,
        })
    }

    fn queue_text(&self, text: impl Into<Utf8Bytes>) -> Result<(), Ending> {
        self.queue(Message::Text(text.into()))
    }
}

/// The feeds of one socket, subscribed before the upgrade. They are kept apart from
/// [`ChatSocket`] because the bus stream is not `Sync` and the socket is borrowed across awaits.
pub struct SocketFeeds {
    /// Messages of the conversation, already serialized by the log follower, in log order.
    pub room: RoomSubscription,
    /// Frames published on the conversation's topic by sockets on every API node.
    pub ephemeral_frames: BoxStream<'static, Bytes>,
}

pub struct ChatSocket {
    state: AppState,
    user: SocketUser,
    conversation_id: Uuid,
    /// Tags the frames this socket publishes on the ephemeral bus, so it can skip them when
    /// the bus delivers them back.
    connection_id: Uuid,
    limits: SocketLimits,
}

impl ChatSocket {
    pub fn new(
        state: AppState,
        user: SocketUser,
        conversation_id: Uuid,
        limits: SocketLimits,
    ) -> ChatSocket {
        ChatSocket {
            state,
            user,
            conversation_id,
            connection_id: Uuid::new_v4(),
            limits,
        }
    }

    /// Returns the ephemeral bus topic of a conversation's frames.
    pub fn topic(conversation_id: Uuid) -> String {
        format!("chat.{conversation_id}")
    }

    /// Serves the socket until it closes, inside a span with its ids.
    pub async fn run(self, feeds: SocketFeeds, websocket: WebSocket) {
        let span = tracing::debug_span!(
            "chat socket",
            user_id = %self.user.user_id,
            conversation_id = %self.conversation_id,
            connection_id = %self.connection_id,
        );
        self.serve(feeds, websocket).instrument(span).await
    }

    async fn serve(self, mut feeds: SocketFeeds, websocket: WebSocket) {
        tracing::debug!("chat socket opened");
        let (sink, mut incoming) = websocket.split();
        let (frames, queued_frames) = mpsc::channel(self.limits.send_queue_frames);
        let (close_sender, close_receiver) = oneshot::channel();
        let mut writer = tokio::spawn(write_frames(sink, queued_frames, close_receiver));
        let outgoing = Outgoing { frames };

        self.publish_presence(EphemeralKind::UserJoined).await;
        let ending = self
            .relay(&mut feeds, &mut incoming, &outgoing, &mut writer)
            .await;

        let close_frame = ending.close_frame(&self.limits);
        let sent_close = close_frame.is_some();
        match close_frame {
            // A send error means the writer has stopped, so awaiting it below returns at once.
            Some(close_frame) => drop(close_sender.send(close_frame)),
            // Dropping the sender stops the writer without a close frame.
            None => drop(close_sender),
        }
        drop(outgoing);
        if !matches!(ending, Ending::WriteFailed) {
            let write_deadline = WRITE_TIMEOUT + Duration::from_secs(1);
            if tokio::time::timeout(write_deadline, &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
        }
        // Read until the client replies to the close frame (or the reply tungstenite queued for
        // the client's close frame is flushed), so both sides see a complete closing handshake.
        // A stream that already ended returns `None` at once.
        let closing = matches!(ending, Ending::ClientClosed) || sent_close;
        if closing {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, async {
                while let Some(Ok(_)) = incoming.next().await {}
            })
            .await;
        }
        self.publish_presence(EphemeralKind::UserLeft).await;

        match &ending {
            Ending::ReadFailed(error) => {
                tracing::debug!(error = %error, "chat socket closed after a read error")
            }
            Ending::HubClosed | Ending::EphemeralFeedEnded => {
                tracing::warn!(ending = ?ending, "chat socket closed because a feed stopped")
            }
            _ => tracing::debug!(ending = ?ending, "chat socket closed"),
        }
    }

    /// Relays frames in both directions until something ends the socket.
    async fn relay(
        &self,
        feeds: &mut SocketFeeds,
        incoming: &mut SplitStream<WebSocket>,
        outgoing: &Outgoing,
        writer: &mut JoinHandle<()>,
    ) -> Ending {
        let idle_timeout = self.limits.idle_timeout;
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let ping_interval = self.limits.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut revocation_check = tokio::time::interval(REVOCATION_CHECK_INTERVAL);
        revocation_check.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let shutdown = self.state.shutdown.clone();

        // TODO: close the socket when the user leaves or is removed from the conversation,
        // once the conversation aggregate records membership changes.
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => Err(Ending::ShuttingDown),
                _ = &mut idle => Err(Ending::IdleTimeout),
                _ = &mut *writer => Err(Ending::WriteFailed),
                _ = revocation_check.tick() => {
                    if self.state.revoked_sessions.is_revoked(self.user.session_id) {
                        Err(Ending::SessionRevoked)
                    } else {
                        Ok(())
                    }
                }
                _ = ping.tick() => outgoing.queue(Message::Ping(Bytes::new())),
                message = feeds.room.recv() => match message {
                    Ok(frame) => outgoing.queue_text(frame),
                    Err(RecvError::Lagged(missed)) => Err(Ending::Lagged(missed)),
                    Err(RecvError::Closed) => Err(Ending::HubClosed),
                },
                frame = feeds.ephemeral_frames.next() => match frame {
                    Some(payload) => match self.relayable_frame(&payload) {
                        Some(text) => outgoing.queue_text(text),
                        None => Ok(()),
                    },
                    None => Err(Ending::EphemeralFeedEnded),
                },
                message = incoming.next() => match message {
                    None => Err(Ending::Disconnected),
                    Some(Err(error)) if exceeds_size_limit(&error) => Err(Ending::FrameTooLarge),
                    Some(Err(error)) => Err(Ending::ReadFailed(error)),
                    Some(Ok(message)) => {
                        idle.as_mut().reset(Instant::now() + idle_timeout);
                        self.handle_client_message(message, outgoing).await
                    }
                },
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    async fn handle_client_message(
        &self,
        message: Message,
        outgoing: &Outgoing,
    ) -> Result<(), Ending> {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                let error = ErrorFrame::invalid("binary frames are not supported: send JSON text");
                return outgoing.queue_text(error.to_json());
            }
            // tungstenite replies to pings itself, so both kinds only reset the idle timer.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(_) => return Err(Ending::ClientClosed),
        };
        let frame = match ClientFrame::parse(text.as_str()) {
            Ok(frame) => frame,
            Err(error) => return outgoing.queue_text(error.to_json()),
        };
        // TODO: rate-limit typing and read frames per socket. Today a client may publish as
        // fast as it can send, and every socket of the conversation receives each frame.
        let relayed = ChatFrame::ephemeral(
            frame.kind(),
            self.conversation_id,
            self.user.user_id,
            frame.message_id(),
            Utc::now(),
        );
        match self.publish(relayed).await {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::warn!(error = %error, kind = frame.kind().as_str(), "failed to publish a client frame");
                let reply = ErrorFrame::unavailable(format!(
                    "failed to relay the {:?} frame; try again",
                    frame.kind().as_str()
                ));
                outgoing.queue_text(reply.to_json())
            }
        }
    }

    /// Decodes a frame from the bus and returns it without its tag, unless this connection
    /// published it or it belongs to another conversation.
    fn relayable_frame(&self, payload: &[u8]) -> Option<String> {
        let tagged: TaggedFrame = match serde_json::from_slice(payload) {
            Ok(tagged) => tagged,
            Err(error) => {
                tracing::warn!(error = %error, "skipped an undecodable frame from the ephemeral bus");
                return None;
            }
        };
        let own = tagged.connection_id == self.connection_id;
        if own || tagged.frame.conversation_id != self.conversation_id {
            return None;
        }
        Some(tagged.frame.to_json())
    }

    async fn publish_presence(&self, kind: EphemeralKind) {
        let frame = ChatFrame::ephemeral(
            kind,
            self.conversation_id,
            self.user.user_id,
            None,
            Utc::now(),
        );
        if let Err(error) = self.publish(frame).await {
            tracing::warn!(error = %error, kind = kind.as_str(), "failed to publish presence");
        }
    }

    async fn publish(&self, frame: ChatFrame) -> Result<(), LogError> {
        let tagged = TaggedFrame {
            connection_id: self.connection_id,
            frame,
        };
        let payload = serde_json::to_vec(&tagged).expect("tagged frames serialize to JSON");
        self.state
            .ephemeral
            .publish(
                &ChatSocket::topic(self.conversation_id),
                Bytes::from(payload),
            )
            .await
    }
}

/// Writes queued frames until the queue closes or a close frame arrives, which goes first even
/// when frames are still queued. Stops at the first failed or timed-out write.
async fn write_frames(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<CloseFrame>,
) {
    loop {
        let first = tokio::select! {
            biased;
            close_frame = &mut close => {
                if let Ok(close_frame) = close_frame {
                    let closing = sink.send(Message::Close(Some(close_frame)));
                    if let Err(error) = timeout_write(closing).await {
                        tracing::debug!(error = %error, "failed to send the close frame");
                    }
                }
                return;
            }
            frame = frames.recv() => match frame {
                Some(frame) => frame,
                None => return,
            },
        };
        // Write every frame already queued, then flush once.
        let batch = async {
            sink.feed(first).await?;
            while let Ok(frame) = frames.try_recv() {
                sink.feed(frame).await?;
            }
            sink.flush().await
        };
        if let Err(error) = timeout_write(batch).await {
            tracing::debug!(error = %error, "failed to write to the chat socket");
            return;
        }
    }
}

async fn timeout_write(write: impl Future<Output = Result<(), axum::Error>>) -> Result<(), String> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("write timed out after {WRITE_TIMEOUT:?}")),
    }
}

/// Reports whether a read failed because a frame or message exceeded the configured maximum.
fn exceeds_size_limit(error: &axum::Error) -> bool {
    // NOTE: axum does not re-export tungstenite's error type and this crate does not depend on
    // tungstenite, so the kind is read from the message: tungstenite 0.29 formats
    // `Error::Capacity` as "Space limit exceeded: …". The oversized-frame API test fails if
    // that changes.
    error.to_string().starts_with("Space limit exceeded")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_interval_stays_below_idle_timeout() {
        let settings = WebSocketSettings {
            ping_interval_secs: 60,
            idle_timeout_secs: 60,
            ..WebSocketSettings::default()
        };
        let limits = SocketLimits::from_settings(&settings);
        assert_eq!(limits.ping_interval, Duration::from_secs(30));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn zero_settings_do_not_disable_liveness() {
        let settings = WebSocketSettings {
            max_frame_bytes: 0,
            ping_interval_secs: 0,
            idle_timeout_secs: 0,
            ticket_ttl_secs: 0,
            send_queue_frames: 0,
        };
        let limits = SocketLimits::from_settings(&settings);
        assert!(limits.ping_interval > Duration::ZERO);
        assert!(limits.ping_interval < limits.idle_timeout);
        assert!(limits.send_queue_frames > 0);
    }

    #[test]
    fn close_reasons_fit_in_a_close_frame() {
        let limits = SocketLimits::from_settings(&WebSocketSettings::default());
        let endings = [
            Ending::FrameTooLarge,
            Ending::IdleTimeout,
            Ending::ShuttingDown,
            Ending::SessionRevoked,
            Ending::Lagged(u64::MAX),
            Ending::SendQueueFull,
            Ending::HubClosed,
            Ending::EphemeralFeedEnded,
        ];
        for ending in endings {
            let frame = ending
                .close_frame(&limits)
                .expect("these endings send a close frame");
            assert!(
                frame.reason.as_str().len() <= 123,
                "{ending:?}: {}",
                frame.reason
            );
        }
    }

    #[test]
    fn dead_connection_gets_no_close_frame() {
        let limits = SocketLimits::from_settings(&WebSocketSettings::default());
        for ending in [
            Ending::ClientClosed,
            Ending::Disconnected,
            Ending::WriteFailed,
        ] {
            assert!(ending.close_frame(&limits).is_none(), "{ending:?}");
        }
    }
}
