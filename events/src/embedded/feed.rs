//! Live feeds of the embedded log. A feed reads commits from the table page by page. Once it
//! has caught up, it waits for the writer to broadcast a new head position and reads again.
//! The table, not the broadcast, is the source of events, so a feed that falls behind the
//! broadcast re-reads the head from the table and neither misses nor repeats an event.

use std::collections::VecDeque;

use futures::stream;
use sqlx::sqlite::SqlitePool;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::log::{head_position, read_commits};
use super::rows::to_unsigned;
use super::schema::query_failed;
use crate::envelope::EventEnvelope;
use crate::log::{EventFeed, FeedFilter, FeedStart, LogError};

/// How many events a feed reads from the table at a time.
const PAGE_EVENTS: usize = 512;

/// Opens a feed. The head receiver is created before the start position is read, so a
/// commit that lands in between is announced to this feed.
pub(crate) async fn open(
    readers: SqlitePool,
    heads: broadcast::Receiver<u64>,
    start: FeedStart,
    filter: FeedFilter,
) -> Result<EventFeed, LogError> {
    let known_head = head_position(&readers).await?;
    let after = match start {
        FeedStart::AfterPosition(position) => position,
        FeedStart::New => known_head,
        FeedStart::AtTime(time) => position_before_time(&readers, time.timestamp_micros()).await?,
    };
    let type_filter = match filter {
        FeedFilter::All => None,
        FeedFilter::AggregateTypes(types) => {
            let names: Vec<&str> = types.iter().map(|kind| kind.as_str()).collect();
            Some(format!(",{},", names.join(",")))
        }
    };
    let cursor = FeedCursor {
        readers,
        heads,
        type_filter,
        after,
        known_head,
        pending: VecDeque::new(),
        finished: false,
    };
    let feed = stream::unfold(cursor, |mut cursor| async move {
        let item = cursor.next().await?;
        Some((item, cursor))
    });
    Ok(Box::pin(feed))
}

/// Returns the position just before the first commit recorded at or after `micros`, or the
/// head when there is none. It is one statement, so both values come from the same snapshot.
async fn position_before_time(readers: &SqlitePool, micros: i64) -> Result<u64, LogError> {
    let position: i64 = sqlx::query_scalar(
        "SELECT COALESCE( \
             (SELECT MIN(position) FROM commits WHERE recorded_at >= ?1) - 1, \
             (SELECT COALESCE(MAX(position), 0) FROM commits))",
    )
    .bind(micros)
    .fetch_one(readers)
    .await
    .map_err(|error| query_failed("find the first commit at a time", error))?;
    to_unsigned(position, position, "position")
}

struct FeedCursor {
    readers: SqlitePool,
    /// Head positions from the writer. They only signal when to read again, because the
    /// events always come from the table.
    heads: broadcast::Receiver<u64>,
    /// The aggregate types to deliver in the form `read_commits` takes, or `None` for all.
    type_filter: Option<String>,
    /// The position up to which the table has been read. Matching commits up to it are in
    /// `pending` or delivered.
    after: u64,
    /// The highest position known to be committed.
    known_head: u64,
    pending: VecDeque<EventEnvelope>,
    /// Set after an error, so the feed ends after reporting it.
    finished: bool,
}

impl FeedCursor {
    async fn next(&mut self) -> Option<Result<EventEnvelope, LogError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            let result = if self.known_head > self.after {
                self.read_page().await
            } else {
                self.wait_for_head().await
            };
            if let Err(error) = result {
                self.finished = true;
                return Some(Err(error));
            }
        }
    }

    async fn read_page(&mut self) -> Result<(), LogError> {
        // Everything up to `head` was committed before this read began, so a page that ends
        // early has covered the table at least that far.
        let head = self.known_head;
        let events = read_commits(
            &self.readers,
            self.after,
            PAGE_EVENTS,
            self.type_filter.as_deref(),
        )
        .await?;
        let last_position = events.last().map_or(self.after, |event| event.position);
        self.after = if events.len() < PAGE_EVENTS {
            last_position.max(head)
        } else {
            last_position
        };
        self.known_head = self.known_head.max(self.after);
        self.pending.extend(events);
        Ok(())
    }

    async fn wait_for_head(&mut self) -> Result<(), LogError> {
        match self.heads.recv().await {
            Ok(head) => {
                self.known_head = self.known_head.max(head);
                Ok(())
            }
            Err(RecvError::Lagged(skipped)) => {
                tracing::trace!(
                    skipped,
                    "embedded log feed fell behind; re-reading the head"
                );
                let head = head_position(&self.readers).await?;
                self.known_head = self.known_head.max(head);
                Ok(())
            }
            Err(RecvError::Closed) => Err(LogError::Unavailable(
                "the embedded event log was closed while a feed was open".to_owned(),
            )),
        }
    }
}
