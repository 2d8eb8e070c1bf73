//! The layout of the embedded store's SQLite file and the connection settings for its writer
//! and its readers. The schema is created on open, idempotently, and its version is kept in
//! `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};

use crate::log::LogError;

/// The schema version this build writes. A file with a higher version was written by a newer
/// build and is not opened.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for another connection's lock before it fails with
/// `SQLITE_BUSY`. Another process holding the file open is the usual cause.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections for `read_stream`, `read_all`, feeds and snapshot loads.
const MAX_READER_CONNECTIONS: u32 = 4;

/// The tables, indexes and triggers of schema version 1.
///
/// `commits` stores one row per commit. `position` is the global log position. It is the
/// rowid, so it grows with every insert and is never reused, because rows are never deleted.
/// `recorded_at` is in microseconds since the Unix epoch (UTC). `metadata` and `events` are
/// JSON documents in the layout of [`super::rows`]. The triggers make the table
/// append-only: UPDATE and DELETE abort, and so does an INSERT that would replace a row
/// (`INSERT OR REPLACE` deletes the old row without firing delete triggers unless
/// `recursive_triggers` is on) or leave a gap or overlap in a stream's sequences.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS commits (
    position INTEGER PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    first_sequence INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    commit_id TEXT NOT NULL UNIQUE,
    recorded_at INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    events TEXT NOT NULL,
    CHECK (first_sequence >= 1 AND last_sequence >= first_sequence)
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS commits_by_stream
    ON commits (aggregate_type, aggregate_id, last_sequence);

CREATE INDEX IF NOT EXISTS commits_by_recorded_at ON commits (recorded_at);

CREATE TRIGGER IF NOT EXISTS commits_reject_update BEFORE UPDATE ON commits
BEGIN
    SELECT RAISE(ABORT, 'the commits table is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS commits_reject_delete BEFORE DELETE ON commits
BEGIN
    SELECT RAISE(ABORT, 'the commits table is append-only: DELETE is not allowed');
END;

CREATE TRIGGER IF NOT EXISTS commits_reject_replace BEFORE INSERT ON commits
WHEN EXISTS (SELECT 1 FROM commits WHERE position = NEW.position)
    OR EXISTS (SELECT 1 FROM commits WHERE commit_id = NEW.commit_id)
BEGIN
    SELECT RAISE(ABORT, 'the commits table is append-only: a commit cannot be replaced');
END;

CREATE TRIGGER IF NOT EXISTS commits_reject_sequence_gap BEFORE INSERT ON commits
WHEN NEW.first_sequence <> 1 + COALESCE(
    (SELECT MAX(last_sequence) FROM commits
        WHERE aggregate_type = NEW.aggregate_type AND aggregate_id = NEW.aggregate_id),
    0)
BEGIN
    SELECT RAISE(ABORT, 'a commit must continue its stream''s sequence without a gap or overlap');
END;

CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    position INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    state TEXT NOT NULL,
    saved_at INTEGER NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT, WITHOUT ROWID;
"#;

/// Opens the single read-write connection, creating the file, its parent folders and the
/// schema when they are missing.
pub(crate) async fn open_writer(path: &Path) -> Result<SqliteConnection, LogError> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(parent).await.map_err(|error| {
            LogError::Unavailable(format!(
                "failed to create the folder {} for the embedded event log: {error}",
                parent.display()
            ))
        })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL syncs the WAL on every commit, so an acknowledged append survives a power
        // loss; NORMAL, the usual WAL choice, may lose the last commits.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("recursive_triggers", "ON");
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .map_err(|error| open_failed(path, error))?;
    create_schema(&mut connection, path).await?;
    Ok(connection)
}

/// Opens the pool of read-only connections. The writer must have created the file first.
pub(crate) async fn open_readers(path: &Path) -> Result<SqlitePool, LogError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(MAX_READER_CONNECTIONS)
        .min_connections(1)
        .connect_with(options)
        .await
        .map_err(|error| open_failed(path, error))
}

async fn create_schema(connection: &mut SqliteConnection, path: &Path) -> Result<(), LogError> {
    // IMMEDIATE takes the write lock at once, so two processes opening a new file one after
    // the other do not both try to create the schema from the same empty snapshot.
    let mut transaction = connection
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|error| open_failed(path, error))?;

    let found: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&mut *transaction)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(|error| open_failed(path, error))?;
    if found > SCHEMA_VERSION {
        return Err(LogError::Unavailable(format!(
            "the embedded event log {} has schema version {found}, but this build reads up \
             to version {SCHEMA_VERSION}; open it with a newer build",
            path.display()
        )));
    }

    sqlx::raw_sql(SCHEMA)
        .execute(&mut *transaction)
        .await
        .map_err(|error| open_failed(path, error))?;
    // PRAGMA takes no bound parameters, and SCHEMA_VERSION is a constant.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {SCHEMA_VERSION}"
    )))
    .execute(&mut *transaction)
    .await
    .map_err(|error| open_failed(path, error))?;

    transaction
        .commit()
        .await
        .map_err(|error| open_failed(path, error))
}

fn open_failed(path: &Path, error: sqlx::Error) -> LogError {
    LogError::Unavailable(format!(
        "failed to open the embedded event log {}: {error}",
        path.display()
    ))
}

/// Maps a failed statement to the log's error type.
pub(crate) fn query_failed(action: &str, error: sqlx::Error) -> LogError {
    LogError::Unavailable(format!("embedded event log: failed to {action}: {error}"))
}
