//! Behavior of the embedded log beyond the shared contract: the append-only triggers, the
//! schema version check, durability across reopening, group commit, closing, and feeds that
//! fall behind the head broadcast.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use secureconnect_events::embedded::EmbeddedLog;
use secureconnect_events::{
    AggregateType, AppendError, Appended, Commit, CommitMetadata, EventEnvelope, EventFeed,
    EventLog, FeedFilter, FeedStart, LogError, NewEvent, Snapshot, SnapshotStore, StreamId,
    StreamVersion,
};
use serde_json::json;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tempfile::TempDir;
use uuid::Uuid;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A temporary folder for one test's file, removed when dropped.
struct TestFolder {
    folder: TempDir,
}

impl TestFolder {
    fn new() -> TestFolder {
        TestFolder {
            folder: tempfile::tempdir().expect("failed to create a temporary folder"),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.folder.path().join("events.sqlite3")
    }
}

async fn open_log(path: &Path) -> EmbeddedLog {
    tokio::time::timeout(TIMEOUT, EmbeddedLog::open(path))
        .await
        .expect("opening the embedded log timed out")
        .expect("failed to open the embedded log")
}

/// Opens a plain read-write connection, as an operator with the sqlite3 tool would.
async fn open_raw_connection(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("failed to open a raw connection to the log file")
}

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
            event_type: "EmbeddedCaseRecorded".to_owned(),
            schema_version: 1,
            payload: json!({ "label": label }),
        }],
    }
}

async fn append_ok(log: &EmbeddedLog, commit: Commit) -> Appended {
    tokio::time::timeout(TIMEOUT, log.append(commit))
        .await
        .expect("append timed out")
        .expect("append failed")
}

async fn read_whole_stream(log: &EmbeddedLog, stream: &StreamId) -> Vec<EventEnvelope> {
    log.read_stream(stream, StreamVersion::EMPTY)
        .await
        .expect("read_stream failed")
        .0
}

async fn next_item(feed: &mut EventFeed) -> Option<Result<EventEnvelope, LogError>> {
    tokio::time::timeout(TIMEOUT, feed.next())
        .await
        .expect("the feed delivered nothing in time")
}

fn label(event: &EventEnvelope) -> &str {
    event.payload["label"].as_str().unwrap_or("<no label>")
}

#[tokio::test]
async fn triggers_reject_update_and_delete() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    append_ok(&log, new_commit(&stream, StreamVersion::EMPTY, "original")).await;
    let mut raw = open_raw_connection(&folder.log_path()).await;

    let update = sqlx::query("UPDATE commits SET events = '[]'")
        .execute(&mut raw)
        .await;
    let delete = sqlx::query("DELETE FROM commits").execute(&mut raw).await;

    let update_error = update
        .expect_err("an UPDATE of commits must fail")
        .to_string();
    assert!(
        update_error.contains("append-only"),
        "the UPDATE must be rejected by the trigger, got {update_error}"
    );
    let delete_error = delete
        .expect_err("a DELETE of commits must fail")
        .to_string();
    assert!(
        delete_error.contains("append-only"),
        "the DELETE must be rejected by the trigger, got {delete_error}"
    );
    let events = read_whole_stream(&log, &stream).await;
    assert_eq!(events.len(), 1, "the commit must still be stored");
    assert_eq!(
        label(&events[0]),
        "original",
        "the commit must be unchanged"
    );
}

#[tokio::test]
async fn triggers_reject_replacing_insert() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let appended = append_ok(&log, new_commit(&stream, StreamVersion::EMPTY, "original")).await;
    let mut raw = open_raw_connection(&folder.log_path()).await;

    // Each INSERT starts another stream, so only the position or the commit id collides.
    let same_position = sqlx::query(
        "INSERT OR REPLACE INTO commits (position, aggregate_type, aggregate_id, \
         first_sequence, last_sequence, commit_id, recorded_at, metadata, events) \
         SELECT position, aggregate_type, 'forged-1', 1, 1, 'forged', recorded_at, metadata, \
         '[]' FROM commits WHERE position = ?1",
    )
    .bind(appended.position as i64)
    .execute(&mut raw)
    .await;
    let same_commit_id = sqlx::query(
        "INSERT OR REPLACE INTO commits (aggregate_type, aggregate_id, first_sequence, \
         last_sequence, commit_id, recorded_at, metadata, events) \
         SELECT aggregate_type, 'forged-2', 1, 1, commit_id, recorded_at, metadata, '[]' \
         FROM commits WHERE position = ?1",
    )
    .bind(appended.position as i64)
    .execute(&mut raw)
    .await;

    for (case, result) in [("position", same_position), ("commit id", same_commit_id)] {
        let error = result
            .expect_err("an INSERT OR REPLACE of a commit must fail")
            .to_string();
        assert!(
            error.contains("cannot be replaced"),
            "replacing by {case} must be rejected by the trigger, got {error}"
        );
    }
    let events = read_whole_stream(&log, &stream).await;
    assert_eq!(
        label(&events[0]),
        "original",
        "the commit must be unchanged"
    );
}

#[tokio::test]
async fn triggers_reject_sequence_gap() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    append_ok(&log, new_commit(&stream, StreamVersion::EMPTY, "first")).await;
    let mut raw = open_raw_connection(&folder.log_path()).await;

    let gap = sqlx::query(
        "INSERT INTO commits (aggregate_type, aggregate_id, first_sequence, last_sequence, \
         commit_id, recorded_at, metadata, events) \
         SELECT aggregate_type, aggregate_id, 3, 3, 'gap', recorded_at, metadata, events \
         FROM commits",
    )
    .execute(&mut raw)
    .await;

    let error = gap
        .expect_err("an INSERT that skips a sequence must fail")
        .to_string();
    assert!(
        error.contains("without a gap or overlap"),
        "the gap must be rejected by the trigger, got {error}"
    );
    assert_eq!(
        read_whole_stream(&log, &stream).await.len(),
        1,
        "the rejected commit must not be stored"
    );
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let folder = TestFolder::new();
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::new_v4());
    let snapshot = Snapshot {
        version: StreamVersion {
            sequence: 1,
            position: 1,
        },
        state: json!({"messages": 1}),
        state_version: 1,
    };
    let log = open_log(&folder.log_path()).await;
    let first = append_ok(&log, new_commit(&stream, StreamVersion::EMPTY, "before")).await;
    log.snapshot_store()
        .save_snapshot(&stream, snapshot.clone())
        .await
        .expect("saving a snapshot failed");
    let before_close = read_whole_stream(&log, &stream).await;
    tokio::time::timeout(TIMEOUT, log.close())
        .await
        .expect("closing the log timed out");

    let reopened = open_log(&folder.log_path()).await;

    assert_eq!(
        read_whole_stream(&reopened, &stream).await,
        before_close,
        "the reopened log must return the events written before closing"
    );
    assert_eq!(
        reopened
            .head_position()
            .await
            .expect("head_position failed"),
        first.position,
        "the reopened log must keep its head position"
    );
    assert_eq!(
        reopened
            .snapshot_store()
            .load_snapshot(&stream)
            .await
            .expect("loading a snapshot failed"),
        Some(snapshot),
        "the reopened file must keep the snapshot"
    );
    let second = append_ok(&reopened, new_commit(&stream, first.version, "after")).await;
    assert!(
        second.position > first.position,
        "positions must keep growing after reopening"
    );
    assert_eq!(
        second.version.sequence, 2,
        "the stream's sequence must continue after reopening"
    );
}

#[tokio::test]
async fn open_creates_parent_folders() {
    let folder = TestFolder::new();
    let path = folder
        .folder
        .path()
        .join("data")
        .join("nested")
        .join("events.sqlite3");

    let log = open_log(&path).await;

    assert!(
        path.exists(),
        "open must create the file and its parent folders"
    );
    assert_eq!(
        log.head_position().await.expect("head_position failed"),
        0,
        "a new file must start empty"
    );
}

#[tokio::test]
async fn open_rejects_newer_schema_version() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    log.close().await;
    let mut raw = open_raw_connection(&folder.log_path()).await;
    sqlx::raw_sql("PRAGMA user_version = 99")
        .execute(&mut raw)
        .await
        .expect("failed to set user_version");
    raw.close()
        .await
        .expect("failed to close the raw connection");

    let result = EmbeddedLog::open(&folder.log_path()).await;

    match result {
        Err(LogError::Unavailable(message)) => assert!(
            message.contains("schema version 99"),
            "the error must name the file's schema version, got {message}"
        ),
        other => panic!("opening a file of a newer schema must fail, got {other:?}"),
    }
}

#[tokio::test]
async fn batch_applies_commits_in_queue_order() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let stream = StreamId::for_uuid(AggregateType::Conversation, Uuid::new_v4());
    let version = |sequence: u64| StreamVersion {
        sequence,
        position: 0,
    };
    // Queued together, each commit expects the version the one before it leaves, except the
    // third, which is stale.
    let commits = vec![
        new_commit(&stream, version(0), "a"),
        new_commit(&stream, version(1), "b"),
        new_commit(&stream, version(0), "stale"),
        new_commit(&stream, version(2), "c"),
    ];

    let results = tokio::time::timeout(
        TIMEOUT,
        futures::future::join_all(commits.into_iter().map(|commit| log.append(commit))),
    )
    .await
    .expect("the appends timed out");

    assert!(
        results[0].is_ok(),
        "the first commit must succeed: {:?}",
        results[0]
    );
    assert!(
        results[1].is_ok(),
        "a commit expecting an earlier queued commit's version must succeed: {:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(AppendError::Conflict { .. })),
        "a stale commit must conflict, got {:?}",
        results[2]
    );
    assert!(
        results[3].is_ok(),
        "a conflict must fail only its own commit: {:?}",
        results[3]
    );
    let events = read_whole_stream(&log, &stream).await;
    let labels: Vec<&str> = events.iter().map(label).collect();
    assert_eq!(
        labels,
        vec!["a", "b", "c"],
        "the stream must hold the three valid commits"
    );
}

#[tokio::test]
async fn close_fails_appends_and_ends_feeds() {
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let stream = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    let mut feed = log
        .feed(FeedStart::New, FeedFilter::All)
        .await
        .expect("opening a feed failed");

    tokio::time::timeout(TIMEOUT, log.close())
        .await
        .expect("closing the log timed out");
    let append = log
        .append(new_commit(&stream, StreamVersion::EMPTY, "late"))
        .await;

    assert!(
        matches!(append, Err(AppendError::Log(LogError::Unavailable(_)))),
        "an append after close must fail as unavailable, got {append:?}"
    );
    assert!(
        matches!(
            next_item(&mut feed).await,
            Some(Err(LogError::Unavailable(_)))
        ),
        "an open feed must report that the log closed"
    );
    assert!(
        next_item(&mut feed).await.is_none(),
        "a feed must end after reporting an error"
    );
}

#[tokio::test]
async fn lagging_feed_misses_and_repeats_nothing() {
    // More transactions than the head broadcast keeps (1024 head positions), appended one
    // by one while the feed is not read, so the feed's receiver lags and must fall back to
    // the table.
    const COMMITS: usize = 1100;
    let folder = TestFolder::new();
    let log = open_log(&folder.log_path()).await;
    let mut feed = log
        .feed(FeedStart::New, FeedFilter::All)
        .await
        .expect("opening a feed failed");
    let commits: Vec<Commit> = (0..COMMITS)
        .map(|index| {
            let stream = StreamId::for_uuid(AggregateType::Session, Uuid::new_v4());
            new_commit(&stream, StreamVersion::EMPTY, &format!("commit-{index}"))
        })
        .collect();
    let event_ids: std::collections::HashSet<Uuid> = commits
        .iter()
        .map(|commit| commit.events[0].event_id)
        .collect();

    for commit in commits {
        append_ok(&log, commit).await;
    }

    let mut delivered = Vec::with_capacity(COMMITS);
    for _ in 0..COMMITS {
        match next_item(&mut feed).await {
            Some(Ok(event)) => delivered.push(event),
            other => panic!("the feed must deliver every commit, got {other:?}"),
        }
    }
    for pair in delivered.windows(2) {
        assert!(
            pair[1].position > pair[0].position,
            "a lagging feed must deliver positions in order without repeats"
        );
    }
    let delivered_ids: std::collections::HashSet<Uuid> =
        delivered.iter().map(|event| event.event_id).collect();
    assert_eq!(
        delivered_ids, event_ids,
        "a lagging feed must deliver every event"
    );
    let marker = StreamId::for_uuid(AggregateType::User, Uuid::new_v4());
    append_ok(&log, new_commit(&marker, StreamVersion::EMPTY, "marker")).await;
    match next_item(&mut feed).await {
        Some(Ok(event)) => assert_eq!(
            label(&event),
            "marker",
            "after the backlog the feed must deliver the next new commit"
        ),
        other => panic!("the feed must go on after the backlog, got {other:?}"),
    }
}
