//! The chat hub of one API node: a broadcast channel per conversation that has sockets on this
//! node. The log follower publishes every new message once, already serialized, and each
//! socket of that conversation receives it in log order.

use axum::extract::ws::Utf8Bytes;
use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

pub struct ChatHub {
    /// One channel per conversation with at least one local socket. A room is removed when
    /// its last receiver leaves; the follower publishing to a missing room is a no-op.
    rooms: DashMap<Uuid, broadcast::Sender<Utf8Bytes>>,
    /// Frames buffered per room; a socket that falls further behind is closed and must
    /// re-read the history over REST.
    room_capacity: usize,
}

impl ChatHub {
    pub fn new(room_capacity: usize) -> ChatHub {
        ChatHub {
            rooms: DashMap::new(),
            room_capacity: room_capacity.max(16),
        }
    }

    pub fn subscribe(&self, conversation_id: Uuid) -> broadcast::Receiver<Utf8Bytes> {
        self.rooms
            .entry(conversation_id)
            .or_insert_with(|| broadcast::channel(self.room_capacity).0)
            .subscribe()
    }

    /// Removes the room when no socket listens any more. Call after dropping a receiver.
    pub fn release(&self, conversation_id: Uuid) {
        self.rooms
            .remove_if(&conversation_id, |_, sender| sender.receiver_count() == 0);
    }

    /// Delivers a serialized frame to the conversation's local sockets, if any.
    pub fn publish(&self, conversation_id: Uuid, frame: Utf8Bytes) {
        if let Some(sender) = self.rooms.get(&conversation_id) {
            // An error only means every receiver left since the lookup.
            let _ = sender.send(frame);
        }
    }

    pub fn has_room(&self, conversation_id: Uuid) -> bool {
        self.rooms.contains_key(&conversation_id)
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_only_their_room() {
        let hub = ChatHub::new(16);
        let first = Uuid::new_v4();
        let second = Uuid::new_v4();
        let mut first_receiver = hub.subscribe(first);
        let mut second_receiver = hub.subscribe(second);

        hub.publish(first, Utf8Bytes::from_static("one"));

        assert_eq!(first_receiver.recv().await.unwrap().as_str(), "one");
        assert!(second_receiver.try_recv().is_err());
    }

    #[test]
    fn room_is_removed_after_last_receiver() {
        let hub = ChatHub::new(16);
        let room = Uuid::new_v4();
        let receiver = hub.subscribe(room);
        hub.release(room);
        assert!(hub.has_room(room), "room removed while a receiver listens");

        drop(receiver);
        hub.release(room);
        assert!(!hub.has_room(room));
    }
}
