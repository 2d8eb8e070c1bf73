//! JetStream-specific behaviour beyond the shared contract: the server enforces the
//! append-only stream, an unsafe existing stream is rejected, tickets redeem once, ephemeral
//! frames and appends cross separate connections, and undecodable messages are reported.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use uuid::Uuid;

use secureconnect_events::{
    AggregateType, AppendError, Appended, Commit, CommitMetadata, EphemeralBus, EventEnvelope,
    EventFeed, EventLog, FeedFilter, FeedStart, LogError, NewEvent, StreamId, StreamVersion,
    TicketStore,
};
use secureconnect_nats::JetStreamBackend;

use common::{Cleanup, NATS_URL, STEP_TIMEOUT, TestBackend, connect, unique_config};

fn new_commit(stream: &StreamId, expected: StreamVersion, label: &str) -> Commit {
    Commit {
        stream: stream.clone(),
        expected,
        commit_id: Uuid::new_v4(),
        recorded_at: Utc::now(),
        metadata: CommitMetadata {
            actor: None,
            correlation_id: Uuid::new_v4(),
            causation_id: None,
        },
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "TestRecorded".to_owned(),
            schema_version: 1,
            payload: json!({ "label": label }),
        }],
    }
}

async fn append(log: &dyn EventLog, commit: Commit) -> Appended {
    match tokio::time::timeout(STEP_TIMEOUT, log.append(commit)).await {
        Ok(Ok(appended)) => appended,
        Ok(Err(error)) => panic!("append failed: {error}"),
        Err(_) => panic!("append timed out after {STEP_TIMEOUT:?}"),
    }
}

async fn next_event(feed: &mut EventFeed) -> Result<EventEnvelope, LogError> {
    match tokio::time::timeout(STEP_TIMEOUT, feed.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the feed ended"),
        Err(_) => panic!("the feed delivered nothing within {STEP_TIMEOUT:?}"),
    }
}

/// Creates a stream directly, retrying the store race described at [`common::connect`].
async fn create_raw_stream(jetstream: &jetstream::Context, config: jetstream::stream::Config) {
    for attempt in 1..=3 {
        match jetstream.create_stream(config.clone()).await {
            Ok(_) => return,
            Err(error) if attempt < 3 && error.to_string().contains("10049") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("failed to create stream {}: {error}", config.name),
        }
    }
}

async fn raw_jetstream() -> jetstream::Context {
    let client = tokio::time::timeout(STEP_TIMEOUT, async_nats::connect(NATS_URL))
        .await
        .expect("connecting to NATS timed out")
        .expect("failed to connect to NATS");
    jetstream::new(client)
}

#[tokio::test]
async fn created_stream_is_append_only() {
    let test = TestBackend::start().await;
    let jetstream = raw_jetstream().await;

    let stream = jetstream
        .get_stream(&test.config.stream_name)
        .await
        .expect("the backend must have created its stream");
    let config = &stream.cached_info().config;

    assert_eq!(
        config.subjects,
        vec![format!("{}.>", test.config.subject_prefix)]
    );
    assert!(config.deny_delete, "deny_delete must be set");
    assert!(config.deny_purge, "deny_purge must be set");
    assert!(config.allow_direct, "allow_direct must be set");
    assert!(!config.allow_rollup, "rollups must stay disabled");
    assert_eq!(config.storage, jetstream::stream::StorageType::File);
    assert_eq!(config.retention, jetstream::stream::RetentionPolicy::Limits);
    assert_eq!(config.max_age, Duration::ZERO);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.num_replicas, 1);
}

#[tokio::test]
async fn server_rejects_message_delete_and_purge() {
    let test = TestBackend::start().await;
    let log = test.backend.event_log();
    let stream_id = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let appended = append(&log, new_commit(&stream_id, StreamVersion::EMPTY, "kept")).await;
    let stream = raw_jetstream()
        .await
        .get_stream(&test.config.stream_name)
        .await
        .expect("failed to open the stream");

    let deleted = stream.delete_message(appended.position).await;
    let purged = stream.purge().await;
    let purged_subject = stream
        .purge()
        .filter(format!("{}.>", test.config.subject_prefix))
        .await;

    assert!(deleted.is_err(), "deleting a message must be rejected");
    assert!(purged.is_err(), "purging the stream must be rejected");
    assert!(
        purged_subject.is_err(),
        "purging a subject must be rejected"
    );
    let (events, _) = log
        .read_stream(&stream_id, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert_eq!(events.len(), 1, "the event must still be there");
}

#[tokio::test]
async fn existing_stream_allowing_deletes_is_rejected() {
    let config = unique_config();
    let _cleanup = Cleanup::new(&config);
    let jetstream = raw_jetstream().await;
    create_raw_stream(
        &jetstream,
        jetstream::stream::Config {
            name: config.stream_name.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            deny_delete: false,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        },
    )
    .await;

    let result = tokio::time::timeout(STEP_TIMEOUT, JetStreamBackend::connect(config))
        .await
        .expect("connect timed out");

    let Err(error) = result else {
        panic!("a stream that allows deletes must be rejected");
    };
    let message = error.to_string();
    assert!(
        message.contains("deny_delete"),
        "the error must name the setting: {message}"
    );
}

#[tokio::test]
async fn existing_stream_with_other_subjects_is_rejected() {
    let config = unique_config();
    let _cleanup = Cleanup::new(&config);
    let jetstream = raw_jetstream().await;
    create_raw_stream(
        &jetstream,
        jetstream::stream::Config {
            name: config.stream_name.clone(),
            subjects: vec![format!("{}.user.>", config.subject_prefix)],
            deny_delete: true,
            deny_purge: true,
            allow_direct: true,
            ..Default::default()
        },
    )
    .await;

    let result = tokio::time::timeout(STEP_TIMEOUT, JetStreamBackend::connect(config))
        .await
        .expect("connect timed out");

    let Err(error) = result else {
        panic!("a stream with other subjects must be rejected");
    };
    let message = error.to_string();
    assert!(
        message.contains("subjects"),
        "the error must name the setting: {message}"
    );
}

#[tokio::test]
async fn second_connect_accepts_its_own_stream() {
    let test = TestBackend::start().await;

    let second = connect(test.config.clone()).await;

    assert_eq!(second.config(), &test.config);
}

#[tokio::test]
async fn repeated_commit_after_later_append_is_duplicate() {
    let test = TestBackend::start().await;
    let log = test.backend.event_log();
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::new_v4());
    let first_commit = new_commit(&stream, StreamVersion::EMPTY, "first");
    let first = append(&log, first_commit.clone()).await;
    let second = append(&log, new_commit(&stream, first.version, "second")).await;

    // The retry's expected version is stale by now; the server must still recognize the
    // commit id first and report the stored commit, not a conflict.
    let retried = append(&log, first_commit).await;

    assert!(
        retried.duplicate,
        "the retry must be reported as a duplicate"
    );
    assert_eq!(retried.position, first.position);
    assert_eq!(retried.version, first.version);
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        second.position
    );
}

#[tokio::test]
async fn commit_id_reused_on_other_stream_is_invalid() {
    let test = TestBackend::start().await;
    let log = test.backend.event_log();
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let other = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let commit = new_commit(&stream, StreamVersion::EMPTY, "first");
    append(&log, commit.clone()).await;

    let reused = Commit {
        stream: other,
        ..commit
    };
    let result = log.append(reused).await;

    assert!(
        matches!(result, Err(AppendError::Invalid(_))),
        "reusing a commit id for another stream must be invalid, got {result:?}"
    );
}

#[tokio::test]
async fn inconsistent_expected_version_is_invalid() {
    let test = TestBackend::start().await;
    let log = test.backend.event_log();
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());

    let result = log
        .append(new_commit(
            &stream,
            StreamVersion {
                sequence: 0,
                position: 7,
            },
            "x",
        ))
        .await;

    assert!(
        matches!(result, Err(AppendError::Invalid(_))),
        "got {result:?}"
    );
}

#[tokio::test]
async fn undecodable_message_is_corrupt_at_its_position() {
    let test = TestBackend::start().await;
    let log = test.backend.event_log();
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let subject = format!(
        "{}.user.{}",
        test.config.subject_prefix, stream.aggregate_id
    );
    let ack = raw_jetstream()
        .await
        .publish(subject, Bytes::from_static(b"not a commit"))
        .await
        .expect("failed to publish")
        .await
        .expect("the stream did not acknowledge");

    let read = log.read_stream(&stream, StreamVersion::EMPTY).await;
    let mut feed = log
        .feed(FeedStart::AfterPosition(0), FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let delivered = next_event(&mut feed).await;

    assert!(
        matches!(read, Err(LogError::Corrupt { position, .. }) if position == ack.sequence),
        "read_stream must report the corrupt position, got {read:?}"
    );
    assert!(
        matches!(delivered, Err(LogError::Corrupt { position, .. }) if position == ack.sequence),
        "the feed must report the corrupt position, got {delivered:?}"
    );
    assert!(
        tokio::time::timeout(STEP_TIMEOUT, feed.next())
            .await
            .expect("feed hung")
            .is_none(),
        "the feed must end after an error"
    );
}

#[tokio::test]
async fn two_backends_see_each_others_appends() {
    let test = TestBackend::start().await;
    let other = connect(test.config.clone()).await;
    let first_log = test.backend.event_log();
    let second_log = other.event_log();
    let mut first_feed = first_log
        .feed(FeedStart::New, FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let mut second_feed = second_log
        .feed(FeedStart::New, FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::new_v4());

    let from_second = append(&second_log, new_commit(&stream, StreamVersion::EMPTY, "b")).await;
    let from_first = append(&first_log, new_commit(&stream, from_second.version, "a")).await;

    for feed in [&mut first_feed, &mut second_feed] {
        let earlier = next_event(feed).await.expect("the feed failed");
        let later = next_event(feed).await.expect("the feed failed");
        assert_eq!(earlier.position, from_second.position);
        assert_eq!(earlier.payload["label"], "b");
        assert_eq!(later.position, from_first.position);
        assert_eq!(later.payload["label"], "a");
    }
}

#[tokio::test]
async fn ticket_redeems_once_under_concurrency() {
    let test = TestBackend::start().await;
    let tickets = Arc::new(test.backend.ticket_store());
    tickets
        .issue(
            "ticket-1",
            Bytes::from_static(b"user-42"),
            Duration::from_secs(60),
        )
        .await
        .expect("issuing a ticket failed");

    let redemptions: Vec<_> = (0..20)
        .map(|_| {
            let tickets = tickets.clone();
            tokio::spawn(async move {
                tokio::time::timeout(STEP_TIMEOUT, tickets.redeem("ticket-1")).await
            })
        })
        .collect();
    let mut redeemed = Vec::new();
    for redemption in futures::future::join_all(redemptions).await {
        let result = redemption
            .expect("a redemption task panicked")
            .expect("a redemption timed out")
            .expect("a redemption failed");
        redeemed.extend(result);
    }

    assert_eq!(
        redeemed.len(),
        1,
        "exactly one of 20 redemptions must get the value"
    );
    assert_eq!(redeemed[0], Bytes::from_static(b"user-42"));
    let again = tickets.redeem("ticket-1").await.expect("redeem failed");
    assert_eq!(again, None, "a redeemed ticket must not redeem again");
}

#[tokio::test]
async fn ticket_is_not_redeemed_after_expiry() {
    let test = TestBackend::start().await;
    let tickets = test.backend.ticket_store();
    tickets
        .issue(
            "short",
            Bytes::from_static(b"v"),
            Duration::from_millis(200),
        )
        .await
        .expect("issuing a ticket failed");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = tickets.redeem("short").await.expect("redeem failed");

    assert_eq!(expired, None, "an expired ticket must not redeem");
}

#[tokio::test]
async fn ticket_never_issued_redeems_none() {
    let test = TestBackend::start().await;
    let tickets = test.backend.ticket_store();

    let missing = tickets.redeem("never-issued").await.expect("redeem failed");

    assert_eq!(missing, None);
}

#[tokio::test]
async fn ticket_id_cannot_be_issued_twice() {
    let test = TestBackend::start().await;
    let tickets = test.backend.ticket_store();
    tickets
        .issue(
            "twice",
            Bytes::from_static(b"first"),
            Duration::from_secs(60),
        )
        .await
        .expect("issuing a ticket failed");

    let second = tickets
        .issue(
            "twice",
            Bytes::from_static(b"second"),
            Duration::from_secs(60),
        )
        .await;

    assert!(
        second.is_err(),
        "a ticket id in use must not be issued again"
    );
    let value = tickets.redeem("twice").await.expect("redeem failed");
    assert_eq!(value, Some(Bytes::from_static(b"first")));
}

#[tokio::test]
async fn ephemeral_frames_cross_connections() {
    let test = TestBackend::start().await;
    let other = connect(test.config.clone()).await;
    let publisher = test.backend.ephemeral_bus();
    let subscriber_bus = other.ephemeral_bus();
    let mut typing = subscriber_bus
        .subscribe("chat.conversation-1")
        .await
        .expect("subscribing failed");
    let mut elsewhere = subscriber_bus
        .subscribe("chat.conversation-2")
        .await
        .expect("subscribing failed");

    publisher
        .publish("chat.conversation-1", Bytes::from_static(b"typing"))
        .await
        .expect("publishing failed");

    let frame = tokio::time::timeout(STEP_TIMEOUT, typing.next())
        .await
        .expect("no frame arrived on the other connection");
    assert_eq!(frame, Some(Bytes::from_static(b"typing")));
    let stray = tokio::time::timeout(Duration::from_millis(200), elsewhere.next()).await;
    assert!(stray.is_err(), "a frame must reach only its own topic");
}

#[tokio::test]
async fn ephemeral_wildcard_topic_is_rejected() {
    let test = TestBackend::start().await;
    let bus = test.backend.ephemeral_bus();

    for topic in ["chat.>", "chat.*", "", "chat..x", "chat x"] {
        assert!(
            bus.subscribe(topic).await.is_err(),
            "topic {topic:?} must be rejected"
        );
        assert!(
            bus.publish(topic, Bytes::new()).await.is_err(),
            "topic {topic:?} must be rejected"
        );
    }
}
