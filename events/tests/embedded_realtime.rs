//! Behavior of the in-process ephemeral bus and the in-memory ticket store.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use secureconnect_events::embedded::{InMemoryTicketStore, InProcessBus};
use secureconnect_events::{EphemeralBus, TicketStore};

const TIMEOUT: Duration = Duration::from_secs(5);

async fn next_frame(subscription: &mut BoxStream<'static, Bytes>) -> Bytes {
    tokio::time::timeout(TIMEOUT, subscription.next())
        .await
        .expect("no frame arrived in time")
        .expect("the subscription ended")
}

#[tokio::test]
async fn bus_delivers_to_every_subscriber() {
    let bus = InProcessBus::new();
    let mut first = bus
        .subscribe("chat.room-1")
        .await
        .expect("subscribe failed");
    let mut second = bus
        .subscribe("chat.room-1")
        .await
        .expect("subscribe failed");
    let mut other_topic = bus
        .subscribe("chat.room-2")
        .await
        .expect("subscribe failed");

    bus.publish("chat.room-1", Bytes::from_static(b"typing"))
        .await
        .expect("publish failed");
    bus.publish("chat.room-2", Bytes::from_static(b"elsewhere"))
        .await
        .expect("publish failed");

    assert_eq!(
        next_frame(&mut first).await,
        "typing",
        "the first subscriber must receive"
    );
    assert_eq!(
        next_frame(&mut second).await,
        "typing",
        "the second subscriber must receive"
    );
    assert_eq!(
        next_frame(&mut other_topic).await,
        "elsewhere",
        "a subscriber must receive only its own topic's frames"
    );
}

#[tokio::test]
async fn bus_skips_frames_before_subscribe() {
    let bus = InProcessBus::new();
    let mut early = bus.subscribe("call.abc").await.expect("subscribe failed");
    bus.publish("call.abc", Bytes::from_static(b"offer"))
        .await
        .expect("publish failed");

    let mut late = bus.subscribe("call.abc").await.expect("subscribe failed");
    bus.publish("call.abc", Bytes::from_static(b"candidate"))
        .await
        .expect("publish failed");

    assert_eq!(
        next_frame(&mut early).await,
        "offer",
        "the early subscriber must get the offer"
    );
    assert_eq!(
        next_frame(&mut late).await,
        "candidate",
        "a subscriber must not receive frames published before it subscribed"
    );
}

#[tokio::test]
async fn bus_removes_topic_after_last_drop() {
    let bus = InProcessBus::new();
    let first = bus
        .subscribe("chat.room-1")
        .await
        .expect("subscribe failed");
    let mut second = bus
        .subscribe("chat.room-1")
        .await
        .expect("subscribe failed");

    drop(first);
    assert_eq!(
        bus.topic_count(),
        1,
        "the topic must stay while a subscriber is left"
    );
    bus.publish("chat.room-1", Bytes::from_static(b"still here"))
        .await
        .expect("publish failed");
    assert_eq!(
        next_frame(&mut second).await,
        "still here",
        "the remaining subscriber must still receive after another one dropped"
    );

    drop(second);
    assert_eq!(
        bus.topic_count(),
        0,
        "the topic must be removed with its last subscriber"
    );
    bus.publish("chat.room-1", Bytes::from_static(b"nobody"))
        .await
        .expect("publishing to a topic without subscribers must succeed");
    assert_eq!(bus.topic_count(), 0, "publishing must not create a topic");
}

#[tokio::test]
async fn bus_rejects_invalid_topics() {
    let bus = InProcessBus::new();

    for topic in ["", "chat.", "chat.*", "chat.>", "chat room", "chat..x"] {
        assert!(
            bus.subscribe(topic).await.is_err(),
            "subscribing to {topic:?} must fail"
        );
        assert!(
            bus.publish(topic, Bytes::new()).await.is_err(),
            "publishing to {topic:?} must fail"
        );
    }
}

#[tokio::test]
async fn ticket_redeems_once() {
    let tickets = InMemoryTicketStore::new();
    tickets
        .issue(
            "ticket-1",
            Bytes::from_static(b"user-1"),
            Duration::from_secs(60),
        )
        .await
        .expect("issue failed");

    let first = tickets.redeem("ticket-1").await.expect("redeem failed");
    let second = tickets.redeem("ticket-1").await.expect("redeem failed");

    assert_eq!(
        first,
        Some(Bytes::from_static(b"user-1")),
        "the first redemption must succeed"
    );
    assert_eq!(second, None, "a redeemed ticket must not redeem again");
    assert_eq!(
        tickets.redeem("never-issued").await.expect("redeem failed"),
        None,
        "a ticket that was never issued must not redeem"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticket_concurrent_redemptions_admit_one() {
    const REDEEMERS: usize = 16;
    let tickets = InMemoryTicketStore::new();
    tickets
        .issue(
            "ticket-1",
            Bytes::from_static(b"user-1"),
            Duration::from_secs(60),
        )
        .await
        .expect("issue failed");

    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(REDEEMERS));
    let redeemers: Vec<_> = (0..REDEEMERS)
        .map(|_| {
            let tickets = tickets.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                tickets.redeem("ticket-1").await.expect("redeem failed")
            })
        })
        .collect();
    let mut successes = 0;
    for redeemer in redeemers {
        let redeemed = tokio::time::timeout(TIMEOUT, redeemer)
            .await
            .expect("a redemption timed out")
            .expect("a redemption task panicked");
        if redeemed.is_some() {
            successes += 1;
        }
    }

    assert_eq!(
        successes, 1,
        "exactly one of {REDEEMERS} concurrent redemptions must succeed"
    );
}

#[tokio::test]
async fn ticket_expires_after_ttl() {
    let tickets = InMemoryTicketStore::new();
    tickets
        .issue(
            "short",
            Bytes::from_static(b"user-1"),
            Duration::from_millis(20),
        )
        .await
        .expect("issue failed");
    tickets
        .issue(
            "long",
            Bytes::from_static(b"user-2"),
            Duration::from_secs(60),
        )
        .await
        .expect("issue failed");

    tokio::time::sleep(Duration::from_millis(100)).await;

    assert_eq!(
        tickets.redeem("short").await.expect("redeem failed"),
        None,
        "an expired ticket must not redeem"
    );
    assert_eq!(
        tickets.redeem("long").await.expect("redeem failed"),
        Some(Bytes::from_static(b"user-2")),
        "a ticket within its TTL must redeem"
    );
}
