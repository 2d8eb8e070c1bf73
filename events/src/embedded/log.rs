//! [`EmbeddedLog`], the [`EventLog`] kept in one SQLite file: opening and closing it, and its
//! reads. Appends go to the writer task in [`super::writer`], live feeds are built in
//! [`super::feed`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::feed;
use super::rows::{COMMIT_COLUMNS, CommitRow, EncodedCommit, to_signed, to_unsigned};
use super::schema::{self, query_failed};
use super::snapshots::EmbeddedSnapshotStore;
use super::writer::{WriteRequest, run_writer};
use crate::envelope::EventEnvelope;
use crate::log::{
    AppendError, Appended, Commit, EventFeed, EventLog, FeedFilter, FeedStart, LogError,
};
use crate::stream::{StreamId, StreamVersion};

/// How many requests may wait for the writer before `append` waits for room.
const REQUEST_QUEUE_CAPACITY: usize = 4096;

/// How many head positions a feed may fall behind before it re-reads the head from the file.
const HEAD_BROADCAST_CAPACITY: usize = 1024;

/// The event log in one SQLite file. Cloning is cheap and every clone shares the writer.
///
/// The writer stops after [`EmbeddedLog::close`], or when every clone of the log and of its
/// snapshot stores has been dropped.
///
/// Open each file once per process and share the clones. Feeds learn of new commits from this
/// log's own writer, so a commit written through another `EmbeddedLog` or another process on
/// the same file reaches them only when this log's writer commits next.
#[derive(Clone)]
pub struct EmbeddedLog {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub path: PathBuf,
    /// Requests for the writer task. Snapshot stores hold clones, so the writer runs until
    /// the last of them and of the log's clones is dropped, or until `close`.
    pub requests: mpsc::Sender<WriteRequest>,
    /// A receiver kept only to create new ones for feeds. The writer owns the only sender, so
    /// feeds see the channel close when the writer stops.
    heads: Mutex<broadcast::Receiver<u64>>,
    /// Read-only connections for every read.
    pub readers: SqlitePool,
    /// The writer task, awaited by `close`.
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    pub fn closed(&self) -> LogError {
        LogError::Unavailable(format!(
            "the embedded event log {} is closed",
            self.path.display()
        ))
    }
}

impl EmbeddedLog {
    /// Opens the log in the SQLite file at `path`, creating the file, its parent folders and
    /// the schema when they are missing, and starts the writer task. Must be called inside a
    /// tokio runtime.
    pub async fn open(path: &Path) -> Result<EmbeddedLog, LogError> {
        let connection = schema::open_writer(path).await?;
        let readers = schema::open_readers(path).await?;
        let (requests, request_receiver) = mpsc::channel(REQUEST_QUEUE_CAPACITY);
        let (heads, head_receiver) = broadcast::channel(HEAD_BROADCAST_CAPACITY);
        let writer = tokio::spawn(run_writer(connection, request_receiver, heads));
        let log = EmbeddedLog {
            shared: Arc::new(Shared {
                path: path.to_owned(),
                requests,
                heads: Mutex::new(head_receiver),
                readers,
                writer: Mutex::new(Some(writer)),
            }),
        };
        let head = log.head_position().await?;
        tracing::info!(path = %path.display(), head, "opened the embedded event log");
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Returns a snapshot store in the same file. Its saves go through this log's writer.
    pub fn snapshot_store(&self) -> EmbeddedSnapshotStore {
        EmbeddedSnapshotStore::new(self.shared.clone())
    }

    /// Applies the appends already queued, stops the writer and closes the file. Appends,
    /// reads and snapshot saves fail afterwards, on every clone, and open feeds end with an
    /// error.
    pub async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self
            .shared
            .requests
            .send(WriteRequest::Close { reply })
            .await
            .is_ok()
        {
            // An error means the writer has already stopped.
            let _ = closed.await;
        }
        let writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(writer) = writer
            && let Err(error) = writer.await
        {
            tracing::warn!(%error, "the embedded event log's writer task failed");
        }
        self.shared.readers.close().await;
        tracing::info!(path = %self.shared.path.display(), "closed the embedded event log");
    }

    fn new_head_receiver(&self) -> broadcast::Receiver<u64> {
        self.shared
            .heads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .resubscribe()
    }
}

impl std::fmt::Debug for EmbeddedLog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmbeddedLog")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, commit: Commit) -> Result<Appended, AppendError> {
        let commit = EncodedCommit::new(commit)?;
        let (reply, result) = oneshot::channel();
        let request = WriteRequest::Append {
            commit: Box::new(commit),
            reply,
        };
        if self.shared.requests.send(request).await.is_err() {
            return Err(self.shared.closed().into());
        }
        match result.await {
            Ok(result) => result,
            Err(_) => Err(self.shared.closed().into()),
        }
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        after: StreamVersion,
    ) -> Result<(Vec<EventEnvelope>, StreamVersion), LogError> {
        // One statement reads one consistent snapshot: the commits after `after` and, through
        // the lower bound, at least the stream's last commit, which gives the version. The
        // bound is a range on the stream's index, so reading after a snapshot touches only the
        // commits after it, however long the stream is.
        let rows: Vec<CommitRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COMMIT_COLUMNS} FROM commits \
             WHERE aggregate_type = ?1 AND aggregate_id = ?2 AND last_sequence >= MIN(?3 + 1, \
                 (SELECT MAX(last_sequence) FROM commits \
                  WHERE aggregate_type = ?1 AND aggregate_id = ?2)) \
             ORDER BY last_sequence"
        )))
        .bind(stream.aggregate_type.as_str())
        .bind(stream.aggregate_id.as_str())
        .bind(to_signed(after.sequence))
        .fetch_all(&self.shared.readers)
        .await
        .map_err(|error| query_failed(&format!("read stream {stream}"), error))?;

        let version = match rows.last() {
            Some(last) => StreamVersion {
                sequence: to_unsigned(last.last_sequence, last.position, "last_sequence")?,
                position: to_unsigned(last.position, last.position, "position")?,
            },
            None => StreamVersion::EMPTY,
        };
        let mut events = Vec::new();
        for row in rows {
            row.into_envelopes(after.sequence, &mut events)?;
        }
        Ok((events, version))
    }

    async fn read_all(
        &self,
        after_position: u64,
        max_events: usize,
    ) -> Result<Vec<EventEnvelope>, LogError> {
        read_commits(&self.shared.readers, after_position, max_events, None).await
    }

    async fn feed(&self, start: FeedStart, filter: FeedFilter) -> Result<EventFeed, LogError> {
        feed::open(
            self.shared.readers.clone(),
            self.new_head_receiver(),
            start,
            filter,
        )
        .await
    }

    async fn head_position(&self) -> Result<u64, LogError> {
        head_position(&self.shared.readers).await
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}

/// Reads whole commits after `after_position` in position order until they hold at least
/// `max_events` events or the log ends. `type_filter` is a comma-separated list of aggregate
/// types with a leading and a trailing comma, such as `,user,session,`, or `None` for all.
pub(crate) async fn read_commits(
    readers: &SqlitePool,
    after_position: u64,
    max_events: usize,
    type_filter: Option<&str>,
) -> Result<Vec<EventEnvelope>, LogError> {
    let mut events = Vec::new();
    if max_events == 0 {
        return Ok(events);
    }
    // Every commit has at least one event, so `max_events` rows are always enough. Rows are
    // streamed and the query is dropped once the page is full, so large commits past the
    // page are not decoded.
    let sql = format!(
        "SELECT {COMMIT_COLUMNS} FROM commits \
         WHERE position > ?1 AND (?2 IS NULL OR instr(?2, ',' || aggregate_type || ',') > 0) \
         ORDER BY position LIMIT ?3"
    );
    let mut rows = sqlx::query_as::<_, CommitRow>(sqlx::AssertSqlSafe(sql))
        .bind(to_signed(after_position))
        .bind(type_filter)
        .bind(i64::try_from(max_events).unwrap_or(i64::MAX))
        .fetch(readers);
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|error| query_failed("read the log", error))?
    {
        row.into_envelopes(0, &mut events)?;
        if events.len() >= max_events {
            break;
        }
    }
    Ok(events)
}

pub(crate) async fn head_position(readers: &SqlitePool) -> Result<u64, LogError> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM commits")
        .fetch_one(readers)
        .await
        .map_err(|error| query_failed("read the head position", error))?;
    to_unsigned(head, head, "position")
}
