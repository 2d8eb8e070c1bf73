//! The contract every [`EventLog`] and [`SnapshotStore`] implementation must pass, written once
//! and run against each backend.
//!
//! Each case is a `pub async fn` that takes a fresh, empty log (or snapshot store), checks one
//! rule of the contract and panics with a message naming the broken rule. The two macros
//! [`event_log_contract_tests!`](crate::event_log_contract_tests) and
//! [`snapshot_store_contract_tests!`](crate::snapshot_store_contract_tests) expand to one
//! `#[tokio::test]` per case, so every case runs, passes and fails on its own.
//!
//! A backend's test file passes the path of an async factory function. The factory creates a
//! new, empty backend (its own JetStream stream, its own temp file) and returns a fixture
//! that derefs to the trait object and removes the backend in its `Drop`, which also runs when
//! a case panics. The calling crate needs `tokio` (with the `macros` and `rt-multi-thread`
//! features) as a dependency, because the expanded tests use `#[tokio::test]`.
//!
//! ```ignore
//! struct LogFixture {
//!     log: MyLog,
//!     _directory: tempfile::TempDir,
//! }
//!
//! impl std::ops::Deref for LogFixture {
//!     type Target = dyn EventLog;
//!     fn deref(&self) -> &Self::Target {
//!         &self.log
//!     }
//! }
//!
//! async fn new_log() -> LogFixture {
//!     // create an empty backend that Drop removes
//! }
//!
//! secureconnect_events::event_log_contract_tests!(new_log);
//! ```
//!
//! Feed cases await each item under [`FEED_ITEM_TIMEOUT`], so a feed that stops delivering
//! fails its test instead of hanging it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::envelope::{CommitMetadata, EventEnvelope, NewEvent};
use crate::log::{
    AppendError, Appended, Commit, EventFeed, EventLog, FeedFilter, FeedStart, Snapshot,
    SnapshotStore,
};
use crate::stream::{AggregateType, StreamId, StreamVersion};

/// How long a feed case waits for each expected event before it fails.
pub const FEED_ITEM_TIMEOUT: Duration = Duration::from_secs(5);

/// How many appends race in [`concurrent_appends_admit_exactly_one`].
const CONCURRENT_APPENDS: usize = 8;

/// Expands to one `#[tokio::test]` per event log contract case. Takes the path of an async
/// factory function returning a fixture that derefs to `dyn EventLog`, contains a fresh,
/// empty log and removes its backend when dropped.
#[macro_export]
macro_rules! event_log_contract_tests {
    ($factory:path) => {
        $crate::__contract_test_cases!(
            $factory,
            [
                append_round_trips_every_envelope_field,
                multi_event_commit_shares_one_position,
                positions_grow_across_streams,
                sequences_continue_across_commits,
                stale_expected_version_conflicts,
                expected_version_on_empty_stream_conflicts,
                concurrent_appends_admit_exactly_one,
                repeated_commit_id_is_deduplicated,
                empty_commit_is_invalid,
                read_stream_after_version_returns_later_events,
                read_stream_of_unknown_stream_is_empty,
                read_all_pages_cover_log_without_splitting_commits,
                feed_from_start_replays_then_follows_live,
                feed_after_position_starts_after_it,
                feed_new_delivers_only_later_commits,
                feed_at_time_starts_at_first_later_commit,
                feed_filter_selects_aggregate_types,
                head_position_tracks_last_commit,
            ]
        );
    };
}

/// Expands to one `#[tokio::test]` per snapshot store contract case. Takes the path of an
/// async factory function returning a fixture that derefs to `dyn SnapshotStore`, contains a
/// fresh, empty store and removes its backend when dropped.
#[macro_export]
macro_rules! snapshot_store_contract_tests {
    ($factory:path) => {
        $crate::__contract_test_cases!(
            $factory,
            [
                snapshot_missing_loads_none,
                snapshot_save_then_load_round_trips,
                snapshot_save_overwrites_previous,
                snapshots_are_kept_per_stream,
            ]
        );
    };
}

/// Expands each named case of [`crate::contract`] into a test that builds a fixture with the
/// factory and runs the case against it.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_test_cases {
    ($factory:path, [$($case:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $factory().await;
                $crate::contract::$case(&*fixture).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// Event log cases
// ---------------------------------------------------------------------------------------------

/// Checks that every envelope field comes back exactly as appended, through `read_stream`,
/// `read_all` and the feed alike. `recorded_at` keeps microsecond precision.
pub async fn append_round_trips_every_envelope_field(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let recorded_at = DateTime::from_timestamp_micros(1_715_000_000_123_456)
        .expect("a valid microsecond timestamp");
    let metadata = CommitMetadata {
        actor: Some(Uuid::new_v4()),
        correlation_id: Uuid::new_v4(),
        causation_id: Some(Uuid::new_v4()),
    };
    let events = vec![
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "ConversationCreated".to_owned(),
            schema_version: 1,
            payload: json!({
                "title": "Grüße 👋",
                "participants": ["a", "b"],
                "settings": {"muted": false, "retention_days": null},
            }),
        },
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "MessageSent".to_owned(),
            schema_version: 3,
            payload: json!({"ciphertext": "AAEC", "size": 18_446_744_073_709_551_615_u64}),
        },
    ];
    let commit = Commit {
        stream: stream.clone(),
        expected: StreamVersion::EMPTY,
        commit_id: Uuid::new_v4(),
        recorded_at,
        metadata: metadata.clone(),
        events: events.clone(),
    };

    let appended = append_ok(log, commit).await;

    assert!(
        !appended.duplicate,
        "a first append must not be reported as a duplicate"
    );
    assert_eq!(
        appended.version.sequence, 2,
        "a two-event commit on an empty stream must leave it at sequence 2"
    );
    assert_eq!(
        appended.version.position, appended.position,
        "the stream version must carry the position of the commit that wrote it"
    );
    let expected: Vec<EventEnvelope> = events
        .into_iter()
        .zip(1..)
        .map(|(event, sequence)| EventEnvelope {
            event_id: event.event_id,
            event_type: event.event_type,
            schema_version: event.schema_version,
            aggregate_type: stream.aggregate_type,
            aggregate_id: stream.aggregate_id.clone(),
            aggregate_sequence: sequence,
            position: appended.position,
            recorded_at,
            metadata: metadata.clone(),
            payload: event.payload,
        })
        .collect();

    let (from_stream, version) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert_eq!(
        from_stream, expected,
        "read_stream must return every envelope field as appended"
    );
    assert_eq!(
        version, appended.version,
        "read_stream must return the version the append reported"
    );

    let from_log = log.read_all(0, 100).await.expect("read_all failed");
    assert_eq!(
        from_log, expected,
        "read_all must return every envelope field as appended"
    );

    let mut feed = log
        .feed(FeedStart::AfterPosition(0), FeedFilter::All)
        .await
        .expect("opening a feed failed");
    for envelope in &expected {
        let delivered = next_event(&mut feed).await;
        assert_eq!(
            &delivered, envelope,
            "the feed must deliver every envelope field as appended"
        );
    }
}

/// Checks that all events of one commit share its position and take consecutive sequences.
pub async fn multi_event_commit_shares_one_position(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["first"])).await;

    let appended = append_ok(
        log,
        new_commit(
            &stream,
            version_of(log, &stream).await,
            &["a", "b", "c", "d"],
        ),
    )
    .await;

    let (events, _) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    let committed = &events[1..];
    assert_eq!(committed.len(), 4, "the commit must store all four events");
    for event in committed {
        assert_eq!(
            event.position, appended.position,
            "every event of a commit must carry the commit's position"
        );
    }
    let sequences: Vec<u64> = committed.iter().map(|e| e.aggregate_sequence).collect();
    assert_eq!(
        sequences,
        vec![2, 3, 4, 5],
        "the events of a commit must take consecutive sequences after the stream's version"
    );
    assert_eq!(
        labels(committed),
        vec!["a", "b", "c", "d"],
        "the events of a commit must keep their order"
    );
    assert_eq!(
        appended.version.sequence, 5,
        "the append must report the sequence of the commit's last event"
    );
}

/// Checks that positions grow strictly from one commit to the next, whichever stream each commit
/// goes to.
pub async fn positions_grow_across_streams(log: &dyn EventLog) {
    let first = new_stream(AggregateType::User);
    let second = new_stream(AggregateType::Conversation);
    let third = new_stream(AggregateType::Session);

    let mut positions = Vec::new();
    for (stream, labels) in [
        (&first, &["u1"][..]),
        (&second, &["c1", "c2"][..]),
        (&first, &["u2"][..]),
        (&third, &["s1"][..]),
        (&second, &["c3"][..]),
    ] {
        let expected = version_of(log, stream).await;
        positions.push(
            append_ok(log, new_commit(stream, expected, labels))
                .await
                .position,
        );
    }

    assert!(
        positions[0] > 0,
        "positions must start above 0, which means 'before the first commit'"
    );
    for pair in positions.windows(2) {
        assert!(
            pair[1] > pair[0],
            "positions must grow strictly across streams, got {positions:?}"
        );
    }
    let all = log.read_all(0, 100).await.expect("read_all failed");
    assert_eq!(
        labels(&all),
        vec!["u1", "c1", "c2", "u2", "s1", "c3"],
        "read_all must return commits in the order they were appended"
    );
}

/// Checks that a stream's sequence continues from one commit to the next with no gaps.
pub async fn sequences_continue_across_commits(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let other = new_stream(AggregateType::Conversation);

    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a", "b"])).await;
    append_ok(
        log,
        new_commit(&other, StreamVersion::EMPTY, &["elsewhere"]),
    )
    .await;
    let second = append_ok(log, new_commit(&stream, first.version, &["c"])).await;
    let third = append_ok(log, new_commit(&stream, second.version, &["d", "e", "f"])).await;

    assert_eq!(
        first.version.sequence, 2,
        "first commit must end at sequence 2"
    );
    assert_eq!(
        second.version.sequence, 3,
        "second commit must end at sequence 3"
    );
    assert_eq!(
        third.version.sequence, 6,
        "third commit must end at sequence 6"
    );
    let (events, version) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    let sequences: Vec<u64> = events.iter().map(|e| e.aggregate_sequence).collect();
    assert_eq!(
        sequences,
        vec![1, 2, 3, 4, 5, 6],
        "sequences must count per stream, unaffected by other streams"
    );
    assert_eq!(
        version, third.version,
        "the stream's version must be the one its last append reported"
    );
}

/// Checks that an append with a version the stream has moved past is a conflict and writes nothing,
/// whether the version is an older one or EMPTY.
pub async fn stale_expected_version_conflicts(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::User);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a"])).await;
    let second = append_ok(log, new_commit(&stream, first.version, &["b"])).await;

    let older = log
        .append(new_commit(&stream, first.version, &["stale"]))
        .await;
    assert_conflict(older, &stream, first.version, "an older version");

    let empty = log
        .append(new_commit(&stream, StreamVersion::EMPTY, &["stale"]))
        .await;
    assert_conflict(
        empty,
        &stream,
        StreamVersion::EMPTY,
        "EMPTY on a non-empty stream",
    );

    let (events, version) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert_eq!(
        labels(&events),
        vec!["a", "b"],
        "a conflicting append must not write any event"
    );
    assert_eq!(
        version, second.version,
        "a conflicting append must not move the stream's version"
    );
}

/// Checks that an append expecting events on a stream that has none is a conflict, even when the
/// expected version exists in another stream.
pub async fn expected_version_on_empty_stream_conflicts(log: &dyn EventLog) {
    let other = new_stream(AggregateType::User);
    let other_version = append_ok(log, new_commit(&other, StreamVersion::EMPTY, &["a"]))
        .await
        .version;
    let stream = new_stream(AggregateType::User);

    let result = log.append(new_commit(&stream, other_version, &["b"])).await;
    assert_conflict(
        result,
        &stream,
        other_version,
        "a non-empty version on an empty stream",
    );

    let (events, version) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert!(
        events.is_empty(),
        "a conflicting append must not write any event"
    );
    assert_eq!(
        version,
        StreamVersion::EMPTY,
        "a conflicting append must leave the stream empty"
    );
}

/// Checks that of several appends racing with the same expected version, exactly one succeeds and
/// the others conflict, leaving the stream with the winner's events only.
pub async fn concurrent_appends_admit_exactly_one(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let start = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["start"]))
        .await
        .version;
    let commits: Vec<Commit> = (0..CONCURRENT_APPENDS)
        .map(|index| new_commit(&stream, start, &[&format!("racer-{index}")]))
        .collect();

    let results =
        futures::future::join_all(commits.iter().cloned().map(|commit| log.append(commit))).await;

    let mut winners = Vec::new();
    for (commit, result) in commits.iter().zip(results) {
        match result {
            Ok(appended) => {
                assert!(
                    !appended.duplicate,
                    "a racing append must not be a duplicate"
                );
                winners.push((commit, appended));
            }
            Err(AppendError::Conflict {
                stream: conflicted,
                expected,
            }) => {
                assert_eq!(conflicted, stream, "a conflict must name the stream");
                assert_eq!(expected, start, "a conflict must name the expected version");
            }
            Err(error) => panic!("a racing append must succeed or conflict, got {error:?}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {CONCURRENT_APPENDS} appends with the same expected version must succeed"
    );
    let (winner, appended) = &winners[0];

    let (events, version) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert_eq!(
        events.len(),
        2,
        "the stream must hold the start and the winner only"
    );
    assert_eq!(
        events[1].event_id, winner.events[0].event_id,
        "the stream's second event must be the winner's"
    );
    assert_eq!(
        events[1].aggregate_sequence, 2,
        "the winner's event must take sequence 2"
    );
    assert_eq!(
        version, appended.version,
        "the stream must be at the winner's version"
    );
}

/// Checks that appending a commit id the log already stored returns the stored result marked as a
/// duplicate and writes nothing.
pub async fn repeated_commit_id_is_deduplicated(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::User);
    let commit = new_commit(&stream, StreamVersion::EMPTY, &["once"]);

    let first = append_ok(log, commit.clone()).await;
    let second = append_ok(log, commit).await;

    assert!(!first.duplicate, "the first append must not be a duplicate");
    assert!(
        second.duplicate,
        "the repeated append must be reported as a duplicate"
    );
    assert_eq!(
        second.position, first.position,
        "a duplicate must return the stored commit's position"
    );
    assert_eq!(
        second.version, first.version,
        "a duplicate must return the stored commit's version"
    );
    let (events, _) = log
        .read_stream(&stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    assert_eq!(
        labels(&events),
        vec!["once"],
        "a duplicate must not be written to the stream"
    );
    let all = log.read_all(0, 100).await.expect("read_all failed");
    assert_eq!(all.len(), 1, "a duplicate must not be written to the log");
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        first.position,
        "a duplicate must not move the head"
    );
}

/// Checks that a commit without events is rejected as invalid and writes nothing.
pub async fn empty_commit_is_invalid(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::User);

    let result = log
        .append(new_commit(&stream, StreamVersion::EMPTY, &[]))
        .await;

    assert!(
        matches!(result, Err(AppendError::Invalid(_))),
        "an empty commit must be rejected with AppendError::Invalid, got {result:?}"
    );
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        0,
        "an empty commit must not write anything"
    );
}

/// Checks that `read_stream` after a version returns only later events, and always the current
/// version.
pub async fn read_stream_after_version_returns_later_events(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let other = new_stream(AggregateType::Conversation);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a"])).await;
    append_ok(
        log,
        new_commit(&other, StreamVersion::EMPTY, &["elsewhere"]),
    )
    .await;
    let second = append_ok(log, new_commit(&stream, first.version, &["b", "c"])).await;
    let third = append_ok(log, new_commit(&stream, second.version, &["d"])).await;

    let (later, version) = log
        .read_stream(&stream, first.version)
        .await
        .expect("read_stream failed");
    assert_eq!(
        labels(&later),
        vec!["b", "c", "d"],
        "read_stream must return only the events after the given version"
    );
    let sequences: Vec<u64> = later.iter().map(|e| e.aggregate_sequence).collect();
    assert_eq!(
        sequences,
        vec![2, 3, 4],
        "read_stream must return events in sequence order"
    );
    assert_eq!(
        version, third.version,
        "read_stream must return the current version"
    );

    let (none, version) = log
        .read_stream(&stream, third.version)
        .await
        .expect("read_stream failed");
    assert!(
        none.is_empty(),
        "read_stream after the current version must return no events"
    );
    assert_eq!(
        version, third.version,
        "read_stream must return the current version even with no events to return"
    );
}

/// Checks that `read_stream` of a stream that was never written returns no events and EMPTY.
pub async fn read_stream_of_unknown_stream_is_empty(log: &dyn EventLog) {
    append_ok(
        log,
        new_commit(
            &new_stream(AggregateType::User),
            StreamVersion::EMPTY,
            &["a"],
        ),
    )
    .await;

    let (events, version) = log
        .read_stream(&new_stream(AggregateType::User), StreamVersion::EMPTY)
        .await
        .expect("read_stream of an unknown stream must not fail");

    assert!(events.is_empty(), "an unknown stream must have no events");
    assert_eq!(
        version,
        StreamVersion::EMPTY,
        "an unknown stream must be at EMPTY"
    );
}

/// Checks that paging through `read_all` with any page size covers the whole log in order, and no
/// page ends inside a commit.
pub async fn read_all_pages_cover_log_without_splitting_commits(log: &dyn EventLog) {
    let first = new_stream(AggregateType::Conversation);
    let second = new_stream(AggregateType::User);
    let third = new_stream(AggregateType::Session);
    for (stream, labels) in [
        (&first, &["1a", "1b", "1c"][..]),
        (&second, &["2a"][..]),
        (&first, &["3a", "3b"][..]),
        (&third, &["4a"][..]),
        (&second, &["5a", "5b", "5c", "5d"][..]),
    ] {
        let expected = version_of(log, stream).await;
        append_ok(log, new_commit(stream, expected, labels)).await;
    }
    let whole = log.read_all(0, 1000).await.expect("read_all failed");
    assert_eq!(
        whole.len(),
        11,
        "read_all must return every event of the log"
    );
    for pair in whole.windows(2) {
        assert!(
            pair[1].position >= pair[0].position,
            "read_all must return events in position order"
        );
    }

    for max_events in [1, 2, 3, 5, 100] {
        let mut collected: Vec<EventEnvelope> = Vec::new();
        let mut after = 0;
        loop {
            let page = log
                .read_all(after, max_events)
                .await
                .expect("read_all failed");
            if page.is_empty() {
                break;
            }
            let last_position = page[page.len() - 1].position;
            let in_last_commit = page.iter().filter(|e| e.position == last_position).count();
            assert!(
                page.len() - in_last_commit < max_events,
                "a page of max {max_events} may exceed it only to finish its last commit, \
                 got {} events",
                page.len()
            );
            collected.extend(page);
            if let Some(next) = whole.get(collected.len()) {
                assert_ne!(
                    next.position, last_position,
                    "a page of max {max_events} must not end inside a commit"
                );
            }
            after = last_position;
        }
        assert_eq!(
            collected, whole,
            "pages of max {max_events} events must cover the whole log in order"
        );
    }
}

/// Checks that a feed from position 0 replays the whole log, then delivers new commits as they
/// come.
pub async fn feed_from_start_replays_then_follows_live(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let other = new_stream(AggregateType::User);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a", "b"])).await;
    append_ok(log, new_commit(&other, StreamVersion::EMPTY, &["c"])).await;

    let mut feed = log
        .feed(FeedStart::AfterPosition(0), FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let replayed = next_events(&mut feed, 3).await;
    assert_eq!(
        labels(&replayed),
        vec!["a", "b", "c"],
        "the feed must replay the log in order"
    );

    let live = append_ok(log, new_commit(&stream, first.version, &["d", "e"])).await;
    append_ok(
        log,
        new_commit(&other, version_of(log, &other).await, &["f"]),
    )
    .await;
    let delivered = next_events(&mut feed, 3).await;
    assert_eq!(
        labels(&delivered),
        vec!["d", "e", "f"],
        "the feed must deliver new commits in order, once each"
    );
    assert_eq!(
        delivered[0].position, live.position,
        "a live event must carry its commit's position"
    );
}

/// Checks that a feed after a position starts with the first commit after it.
pub async fn feed_after_position_starts_after_it(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a"])).await;
    let second = append_ok(log, new_commit(&stream, first.version, &["b"])).await;
    let third = append_ok(log, new_commit(&stream, second.version, &["c"])).await;

    let mut feed = log
        .feed(FeedStart::AfterPosition(second.position), FeedFilter::All)
        .await
        .expect("opening a feed failed");
    assert_eq!(
        labels(&next_events(&mut feed, 1).await),
        vec!["c"],
        "the feed must start with the first commit after the given position"
    );

    append_ok(log, new_commit(&stream, third.version, &["d"])).await;
    assert_eq!(
        labels(&next_events(&mut feed, 1).await),
        vec!["d"],
        "the feed must go on with new commits"
    );
}

/// Checks that a feed opened with `New` skips everything already in the log.
pub async fn feed_new_delivers_only_later_commits(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["old"])).await;

    let mut feed = log
        .feed(FeedStart::New, FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let second = append_ok(log, new_commit(&stream, first.version, &["new-1"])).await;
    append_ok(log, new_commit(&stream, second.version, &["new-2"])).await;

    assert_eq!(
        labels(&next_events(&mut feed, 2).await),
        vec!["new-1", "new-2"],
        "a feed opened with New must deliver only commits appended after it opened"
    );
}

/// Checks that a feed at a time starts with the first commit recorded at or after it. The commits
/// are recorded with the wall clock and appended tens of milliseconds apart, so a backend may use
/// either `recorded_at` or its own receive time.
pub async fn feed_at_time_starts_at_first_later_commit(log: &dyn EventLog) {
    let stream = new_stream(AggregateType::Conversation);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["before"])).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let start = now_to_microseconds();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = append_ok(log, new_commit(&stream, first.version, &["after"])).await;

    let mut feed = log
        .feed(FeedStart::AtTime(start), FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let delivered = next_events(&mut feed, 1).await;
    assert_eq!(
        labels(&delivered),
        vec!["after"],
        "a feed at a time must start with the first commit recorded at or after it"
    );

    append_ok(log, new_commit(&stream, second.version, &["live"])).await;
    assert_eq!(
        labels(&next_events(&mut feed, 1).await),
        vec!["live"],
        "a feed at a time must go on with new commits"
    );
}

/// Checks that a feed filtered by aggregate types carries only those streams, in the replay and
/// live.
pub async fn feed_filter_selects_aggregate_types(log: &dyn EventLog) {
    let user = new_stream(AggregateType::User);
    let conversation = new_stream(AggregateType::Conversation);
    let session = new_stream(AggregateType::Session);
    for (stream, label) in [
        (&user, "user-1"),
        (&conversation, "conversation-1"),
        (&session, "session-1"),
        (&user, "user-2"),
        (&conversation, "conversation-2"),
    ] {
        let expected = version_of(log, stream).await;
        append_ok(log, new_commit(stream, expected, &[label])).await;
    }

    let mut conversations = log
        .feed(
            FeedStart::AfterPosition(0),
            FeedFilter::AggregateTypes(vec![AggregateType::Conversation]),
        )
        .await
        .expect("opening a feed failed");
    let mut users_and_sessions = log
        .feed(
            FeedStart::AfterPosition(0),
            FeedFilter::AggregateTypes(vec![AggregateType::User, AggregateType::Session]),
        )
        .await
        .expect("opening a feed failed");
    assert_eq!(
        labels(&next_events(&mut conversations, 2).await),
        vec!["conversation-1", "conversation-2"],
        "a feed filtered to one type must replay only that type"
    );
    assert_eq!(
        labels(&next_events(&mut users_and_sessions, 3).await),
        vec!["user-1", "session-1", "user-2"],
        "a feed filtered to two types must replay both, in position order"
    );

    for (stream, label) in [
        (&user, "user-3"),
        (&conversation, "conversation-3"),
        (&session, "session-2"),
    ] {
        let expected = version_of(log, stream).await;
        append_ok(log, new_commit(stream, expected, &[label])).await;
    }
    assert_eq!(
        labels(&next_events(&mut conversations, 1).await),
        vec!["conversation-3"],
        "a feed filtered to one type must deliver only that type live"
    );
    assert_eq!(
        labels(&next_events(&mut users_and_sessions, 2).await),
        vec!["user-3", "session-2"],
        "a feed filtered to two types must deliver both live"
    );
}

/// Checks that `head_position` is 0 for an empty log and the last commit's position after appends.
pub async fn head_position_tracks_last_commit(log: &dyn EventLog) {
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        0,
        "an empty log must have head position 0"
    );

    let stream = new_stream(AggregateType::User);
    let other = new_stream(AggregateType::Session);
    let first = append_ok(log, new_commit(&stream, StreamVersion::EMPTY, &["a", "b"])).await;
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        first.position,
        "the head must be the position of the only commit"
    );
    let last = append_ok(log, new_commit(&other, StreamVersion::EMPTY, &["c"])).await;
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        last.position,
        "the head must be the position of the last commit"
    );
}

// ---------------------------------------------------------------------------------------------
// Snapshot store cases
// ---------------------------------------------------------------------------------------------

/// Checks that loading a snapshot that was never saved returns `None`.
pub async fn snapshot_missing_loads_none(store: &dyn SnapshotStore) {
    let loaded = store
        .load_snapshot(&new_stream(AggregateType::Conversation))
        .await
        .expect("loading a missing snapshot must not fail");

    assert_eq!(
        loaded, None,
        "a snapshot that was never saved must load as None"
    );
}

/// Checks that a saved snapshot loads back with its version, state and state version.
pub async fn snapshot_save_then_load_round_trips(store: &dyn SnapshotStore) {
    let stream = new_stream(AggregateType::Conversation);
    let snapshot = Snapshot {
        version: StreamVersion {
            sequence: 42,
            position: 4242,
        },
        state: json!({"participants": ["a", "b"], "title": "Grüße", "messages": 41}),
        state_version: 3,
    };

    store
        .save_snapshot(&stream, snapshot.clone())
        .await
        .expect("saving a snapshot failed");
    let loaded = store
        .load_snapshot(&stream)
        .await
        .expect("loading a snapshot failed");

    assert_eq!(loaded, Some(snapshot), "a snapshot must load back as saved");
}

/// Checks that saving a snapshot for a stream replaces the one saved before.
pub async fn snapshot_save_overwrites_previous(store: &dyn SnapshotStore) {
    let stream = new_stream(AggregateType::Conversation);
    let older = Snapshot {
        version: StreamVersion {
            sequence: 10,
            position: 100,
        },
        state: json!({"messages": 10}),
        state_version: 1,
    };
    let newer = Snapshot {
        version: StreamVersion {
            sequence: 20,
            position: 200,
        },
        state: json!({"messages": 20}),
        state_version: 2,
    };

    store
        .save_snapshot(&stream, older)
        .await
        .expect("saving a snapshot failed");
    store
        .save_snapshot(&stream, newer.clone())
        .await
        .expect("overwriting a snapshot failed");
    let loaded = store
        .load_snapshot(&stream)
        .await
        .expect("loading a snapshot failed");

    assert_eq!(loaded, Some(newer), "a second save must replace the first");
}

/// Checks that snapshots of different streams, also of the same id under another type,
/// stay apart.
pub async fn snapshots_are_kept_per_stream(store: &dyn SnapshotStore) {
    let conversation = new_stream(AggregateType::Conversation);
    let user = StreamId::new(AggregateType::User, conversation.aggregate_id.clone());
    let snapshot = |sequence: u64| Snapshot {
        version: StreamVersion {
            sequence,
            position: sequence * 10,
        },
        state: json!({"sequence": sequence}),
        state_version: 1,
    };

    store
        .save_snapshot(&conversation, snapshot(5))
        .await
        .expect("saving a snapshot failed");
    store
        .save_snapshot(&user, snapshot(7))
        .await
        .expect("saving a snapshot failed");

    assert_eq!(
        store
            .load_snapshot(&conversation)
            .await
            .expect("loading a snapshot failed"),
        Some(snapshot(5)),
        "a stream's snapshot must not be replaced by another stream's"
    );
    assert_eq!(
        store
            .load_snapshot(&user)
            .await
            .expect("loading a snapshot failed"),
        Some(snapshot(7)),
        "streams with the same id under different types must have separate snapshots"
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn new_stream(aggregate_type: AggregateType) -> StreamId {
    StreamId::for_uuid(aggregate_type, Uuid::new_v4())
}

/// Returns the current time cut to whole microseconds, the precision the logs store.
fn now_to_microseconds() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
        .expect("the current time is a valid timestamp")
}

/// Builds a commit of one event per label. Each payload carries its label, so cases can
/// compare what they read by label.
fn new_commit(stream: &StreamId, expected: StreamVersion, labels: &[&str]) -> Commit {
    Commit {
        stream: stream.clone(),
        expected,
        commit_id: Uuid::new_v4(),
        recorded_at: now_to_microseconds(),
        metadata: CommitMetadata {
            actor: None,
            correlation_id: Uuid::new_v4(),
            causation_id: None,
        },
        events: labels
            .iter()
            .map(|label| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "ContractCaseRecorded".to_owned(),
                schema_version: 1,
                payload: json!({ "label": label }),
            })
            .collect(),
    }
}

fn labels(events: &[EventEnvelope]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.payload["label"].as_str().unwrap_or("<no label>"))
        .collect()
}

async fn append_ok(log: &dyn EventLog, commit: Commit) -> Appended {
    let stream = commit.stream.clone();
    match log.append(commit).await {
        Ok(appended) => appended,
        Err(error) => panic!("append to {stream} failed: {error}"),
    }
}

async fn version_of(log: &dyn EventLog, stream: &StreamId) -> StreamVersion {
    let (_, version) = log
        .read_stream(stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed");
    version
}

fn assert_conflict(
    result: Result<Appended, AppendError>,
    stream: &StreamId,
    expected: StreamVersion,
    case: &str,
) {
    match result {
        Err(AppendError::Conflict {
            stream: conflicted,
            expected: reported,
        }) => {
            assert_eq!(
                &conflicted, stream,
                "a conflict must name the stream ({case})"
            );
            assert_eq!(
                reported, expected,
                "a conflict must name the expected version ({case})"
            );
        }
        other => panic!("an append expecting {case} must conflict, got {other:?}"),
    }
}

/// Awaits the next event of a feed, failing after [`FEED_ITEM_TIMEOUT`].
async fn next_event(feed: &mut EventFeed) -> EventEnvelope {
    use futures::StreamExt;

    match tokio::time::timeout(FEED_ITEM_TIMEOUT, feed.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(error))) => panic!("the feed failed: {error}"),
        Ok(None) => panic!("the feed ended, but a feed must go on until it is dropped"),
        Err(_) => panic!("the feed delivered no event within {FEED_ITEM_TIMEOUT:?}"),
    }
}

async fn next_events(feed: &mut EventFeed, count: usize) -> Vec<EventEnvelope> {
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        events.push(next_event(feed).await);
    }
    events
}
