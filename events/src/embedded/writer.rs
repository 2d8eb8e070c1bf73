//! The single writer task of the embedded store. It owns the only read-write connection,
//! takes requests from a channel and applies every request already queued in one
//! transaction (group commit), so one `fsync` covers a whole batch.

use sqlx::sqlite::{SqliteConnection, SqliteQueryResult};
use sqlx::{Connection, SqliteExecutor};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::rows::{EncodedCommit, to_signed, to_unsigned};
use crate::log::{AppendError, Appended, LogError};
use crate::stream::{StreamId, StreamVersion};

/// The largest number of requests applied in one transaction. It bounds how long one batch
/// holds the write lock and how many callers one failed transaction fails.
const MAX_BATCH: usize = 512;

/// A request to the writer task. Each carries the channel its result goes back on.
pub(crate) enum WriteRequest {
    Append {
        commit: Box<EncodedCommit>,
        reply: oneshot::Sender<Result<Appended, AppendError>>,
    },
    SaveSnapshot {
        stream: StreamId,
        version: StreamVersion,
        state_version: u32,
        /// The state as a JSON document.
        state: String,
        reply: oneshot::Sender<Result<(), LogError>>,
    },
    /// Stops accepting requests, applies the ones already queued, closes the connection and
    /// then replies.
    Close { reply: oneshot::Sender<()> },
}

/// Runs until every sender of `requests` is dropped or a `Close` request arrives.
///
/// `heads` receives the highest position written after each transaction commits, so feeds
/// learn that there is something new to read.
pub(crate) async fn run_writer(
    mut connection: SqliteConnection,
    mut requests: mpsc::Receiver<WriteRequest>,
    heads: broadcast::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut close_replies = Vec::new();
    while requests.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A Close request ends intake; what is already queued is still applied below and in
        // the next rounds, until the channel is empty.
        let mut work = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            match request {
                WriteRequest::Close { reply } => {
                    requests.close();
                    close_replies.push(reply);
                }
                other => work.push(other),
            }
        }
        if work.is_empty() {
            continue;
        }

        match apply_batch(&mut connection, &work).await {
            Ok(outcomes) => {
                let new_head = outcomes.iter().filter_map(Outcome::written_position).max();
                for (request, outcome) in work.into_iter().zip(outcomes) {
                    outcome.reply_to(request);
                }
                if let Some(head) = new_head {
                    // An error only means that no feed is listening.
                    let _ = heads.send(head);
                }
            }
            Err(error) => {
                tracing::debug!(requests = work.len(), %error, "embedded log write batch failed");
                let message = error.to_string();
                for request in work {
                    Outcome::Failed(message.clone()).reply_to(request);
                }
            }
        }
    }

    if let Err(error) = connection.close().await {
        tracing::warn!(%error, "failed to close the embedded event log's write connection");
    }
    for reply in close_replies {
        let _ = reply.send(());
    }
}

/// The result of one request of a batch.
enum Outcome {
    Appended(Appended),
    Conflict {
        expected: StreamVersion,
    },
    SnapshotSaved,
    /// The transaction failed, so nothing of the batch was written.
    Failed(String),
}

impl Outcome {
    fn written_position(&self) -> Option<u64> {
        match self {
            Outcome::Appended(appended) if !appended.duplicate => Some(appended.position),
            _ => None,
        }
    }

    fn reply_to(self, request: WriteRequest) {
        // A send fails only when the caller stopped waiting. The write is kept either way, and a
        // retry with the same commit id is reported as a duplicate.
        match request {
            WriteRequest::Append { commit, reply } => {
                let result = match self {
                    Outcome::Appended(appended) => Ok(appended),
                    Outcome::Conflict { expected } => Err(AppendError::Conflict {
                        stream: commit.commit.stream,
                        expected,
                    }),
                    Outcome::Failed(message) => Err(AppendError::Log(write_failed(&message))),
                    Outcome::SnapshotSaved => unreachable!("an append never saves a snapshot"),
                };
                let _ = reply.send(result);
            }
            WriteRequest::SaveSnapshot { reply, .. } => {
                let result = match self {
                    Outcome::Failed(message) => Err(write_failed(&message)),
                    _ => Ok(()),
                };
                let _ = reply.send(result);
            }
            WriteRequest::Close { .. } => unreachable!("close requests are not part of a batch"),
        }
    }
}

fn write_failed(message: &str) -> LogError {
    LogError::Unavailable(format!(
        "embedded event log: write transaction failed: {message}"
    ))
}

/// Applies the requests in one transaction and returns one outcome per request. A conflict
/// fails only its own request; a database error rolls back and fails the whole batch.
async fn apply_batch(
    connection: &mut SqliteConnection,
    work: &[WriteRequest],
) -> Result<Vec<Outcome>, sqlx::Error> {
    // IMMEDIATE takes the write lock before the first read, so the version checks below
    // cannot be invalidated by another process writing the same file.
    let mut transaction = connection.begin_with("BEGIN IMMEDIATE").await?;
    let mut outcomes = Vec::with_capacity(work.len());
    for request in work {
        let outcome = match request {
            WriteRequest::Append { commit, .. } => append(&mut transaction, commit).await?,
            WriteRequest::SaveSnapshot {
                stream,
                version,
                state_version,
                state,
                ..
            } => {
                save_snapshot(&mut *transaction, stream, *version, *state_version, state).await?;
                Outcome::SnapshotSaved
            }
            WriteRequest::Close { .. } => unreachable!("close requests are not part of a batch"),
        };
        outcomes.push(outcome);
    }
    transaction.commit().await?;
    Ok(outcomes)
}

/// Appends one commit unless its id is already stored or its stream has moved on. Earlier
/// commits of the same batch are visible here, because they are in the same transaction.
async fn append(
    connection: &mut SqliteConnection,
    commit: &EncodedCommit,
) -> Result<Outcome, sqlx::Error> {
    if let Some(stored) = stored_result(&mut *connection, &commit.commit_id).await? {
        return Ok(Outcome::Appended(stored));
    }

    let stream = &commit.commit.stream;
    let current: Option<(i64, i64)> = sqlx::query_as(
        "SELECT last_sequence, position FROM commits \
         WHERE aggregate_type = ?1 AND aggregate_id = ?2 \
         ORDER BY last_sequence DESC LIMIT 1",
    )
    .bind(stream.aggregate_type.as_str())
    .bind(stream.aggregate_id.as_str())
    .fetch_optional(&mut *connection)
    .await?;
    let current_sequence = current.map_or(0, |(sequence, _)| sequence);
    let expected = commit.commit.expected;
    if to_signed(expected.sequence) != current_sequence {
        return Ok(Outcome::Conflict { expected });
    }

    let last_sequence = current_sequence + commit.event_count();
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO commits (aggregate_type, aggregate_id, first_sequence, last_sequence, \
         commit_id, recorded_at, metadata, events) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING position",
    )
    .bind(stream.aggregate_type.as_str())
    .bind(stream.aggregate_id.as_str())
    .bind(current_sequence + 1)
    .bind(last_sequence)
    .bind(&commit.commit_id)
    .bind(commit.recorded_at)
    .bind(&commit.metadata)
    .bind(&commit.events)
    .fetch_one(&mut *connection)
    .await?;
    let position = unsigned(position)?;
    Ok(Outcome::Appended(Appended {
        position,
        version: StreamVersion {
            sequence: unsigned(last_sequence)?,
            position,
        },
        duplicate: false,
    }))
}

/// Returns the result of the commit stored under `commit_id`, marked as a duplicate.
async fn stored_result(
    executor: impl SqliteExecutor<'_>,
    commit_id: &str,
) -> Result<Option<Appended>, sqlx::Error> {
    let stored: Option<(i64, i64)> =
        sqlx::query_as("SELECT position, last_sequence FROM commits WHERE commit_id = ?1")
            .bind(commit_id)
            .fetch_optional(executor)
            .await?;
    let Some((position, last_sequence)) = stored else {
        return Ok(None);
    };
    let position = unsigned(position)?;
    Ok(Some(Appended {
        position,
        version: StreamVersion {
            sequence: unsigned(last_sequence)?,
            position,
        },
        duplicate: true,
    }))
}

async fn save_snapshot(
    executor: impl SqliteExecutor<'_>,
    stream: &StreamId,
    version: StreamVersion,
    state_version: u32,
    state: &str,
) -> Result<SqliteQueryResult, sqlx::Error> {
    sqlx::query(
        "INSERT INTO snapshots (aggregate_type, aggregate_id, sequence, position, \
         state_version, state, saved_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE SET \
         sequence = excluded.sequence, position = excluded.position, \
         state_version = excluded.state_version, state = excluded.state, \
         saved_at = excluded.saved_at",
    )
    .bind(stream.aggregate_type.as_str())
    .bind(stream.aggregate_id.as_str())
    .bind(to_signed(version.sequence))
    .bind(to_signed(version.position))
    .bind(i64::from(state_version))
    .bind(state)
    .bind(chrono::Utc::now().timestamp_micros())
    .execute(executor)
    .await
}

/// Converts a stored integer, turning a negative one into a decode error that fails the batch.
fn unsigned(value: i64) -> Result<u64, sqlx::Error> {
    to_unsigned(value, value, "stored value").map_err(|error| sqlx::Error::Decode(Box::new(error)))
}
