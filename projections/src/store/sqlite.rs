//! The read models in an embedded SQLite file: the same tables as on PostgreSQL, written with
//! multi-row `VALUES` because SQLite has no arrays, and the queries.
//!
//! Times are bound as fixed-width UTC text with microseconds, so that comparing the stored
//! text compares the times, as `ORDER BY updated_at` and `max(updated_at, ?)` need. sqlx's own
//! encoding drops trailing zeros of the fraction, which would break that order.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use uuid::Uuid;

use super::records::{
    ADVANCE_CHECKPOINT, ConversationParticipantRecord, MessageRecord, SELECT_ALL_CHECKPOINTS,
    SELECT_CHECKPOINT, SELECT_CONVERSATION_FOR_MEMBER, SELECT_CONVERSATIONS_OF_MEMBER,
    SELECT_MESSAGES_PAGE, SELECT_USER, UserRecord, from_sql_integer, group_conversations,
    message_page, page_upper_bound, to_sql_integer,
};
use super::{ApplyOutcome, BatchCommit, Checkpoint, StoreError, within};
use crate::changes::{Changes, ConversationActivity, ConversationRow, MessageRow, UserRow};
use crate::name::ProjectionName;
use crate::options::StoreOptions;
use crate::queries::{ConversationView, MessageCursor, MessagePage, ReadModels, UserView};

/// Rows per `INSERT` statement. Ten columns a row keep a statement at 10,000 bound values,
/// below SQLite's default limit of 32,766 variables (since SQLite 3.32).
const ROWS_PER_STATEMENT: usize = 1000;

/// How long a writer waits for another connection's write transaction to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct SqliteStore {
    pool: SqlitePool,
    query_timeout: Duration,
}

/// Formats a time as the SQLite tables store it.
fn stored_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl SqliteStore {
    pub(crate) async fn open(
        path: &Path,
        options: &StoreOptions,
    ) -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode a power loss may lose the last commits but never splits one, and a
            // lost batch is applied again from its checkpoint.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.query_timeout)
            .connect_with(connect)
            .await?;
        sqlx::migrate!("./sqlite-migrations").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            query_timeout: options.query_timeout,
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads `name`'s checkpoint, creating it at position 0 when the row is missing.
    pub(crate) async fn checkpoint(&self, name: ProjectionName) -> Result<Checkpoint, StoreError> {
        within(self.query_timeout, "reading a checkpoint", async {
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection, position, updated_at) \
                 VALUES ($1, 0, $2) ON CONFLICT (projection) DO NOTHING",
            )
            .bind(name.as_str())
            .bind(stored_time(Utc::now()))
            .execute(&self.pool)
            .await?;
            let (position, last_recorded_at, updated_at): (
                i64,
                Option<DateTime<Utc>>,
                DateTime<Utc>,
            ) = sqlx::query_as(SELECT_CHECKPOINT)
                .bind(name.as_str())
                .fetch_one(&self.pool)
                .await?;
            Ok::<_, sqlx::Error>(Checkpoint {
                position: from_sql_integer(position),
                last_recorded_at,
                updated_at,
            })
        })
        .await
    }

    pub(crate) async fn positions(&self) -> Result<Vec<(ProjectionName, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = within(
            self.query_timeout,
            "reading checkpoints",
            sqlx::query_as(SELECT_ALL_CHECKPOINTS).fetch_all(&self.pool),
        )
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(projection, position)| {
                let name = projection.parse::<ProjectionName>().ok()?;
                Some((name, from_sql_integer(position)))
            })
            .collect())
    }

    pub(crate) async fn apply(
        &self,
        batch: &BatchCommit<'_>,
        before_commit: &(dyn Fn() -> Result<(), String> + Send + Sync),
    ) -> Result<ApplyOutcome, StoreError> {
        // IMMEDIATE takes the write lock when the transaction begins, waiting up to the busy
        // timeout for another writer, where a deferred transaction could fail with
        // SQLITE_BUSY when it upgrades to a writer.
        let mut transaction = self.pool.begin_with("BEGIN IMMEDIATE").await?;

        let advanced = sqlx::query(ADVANCE_CHECKPOINT)
            .bind(to_sql_integer(batch.to_position))
            .bind(stored_time(batch.last_recorded_at))
            .bind(stored_time(batch.applied_at))
            .bind(batch.name.as_str())
            .bind(to_sql_integer(batch.from_position))
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if advanced == 0 {
            transaction.rollback().await?;
            return Ok(ApplyOutcome::Superseded);
        }

        match batch.changes {
            Changes::Users(users) => insert_users(&mut transaction, users).await?,
            Changes::Conversations { created, activity } => {
                insert_conversations(&mut transaction, created).await?;
                record_activity(&mut transaction, activity).await?;
            }
            Changes::Messages(messages) => insert_messages(&mut transaction, messages).await?,
        }

        before_commit().map_err(StoreError::RejectedBeforeCommit)?;
        transaction.commit().await?;
        Ok(ApplyOutcome::Committed)
    }
}

type Transaction = sqlx::Transaction<'static, Sqlite>;

async fn insert_users(transaction: &mut Transaction, users: &[UserRow]) -> Result<(), sqlx::Error> {
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO users \
                 (user_id, email, username, display_name, avatar_url, status, created_at, \
                  updated_at) ",
        );
        insert.push_values(chunk, |mut row, user| {
            let registered_at = stored_time(user.registered_at);
            row.push_bind(user.user_id)
                .push_bind(user.email.clone())
                .push_bind(user.username.clone())
                .push_bind(user.display_name.clone())
                .push("NULL")
                .push("'offline'")
                .push_bind(registered_at.clone())
                .push_bind(registered_at);
        });
        insert.build().execute(&mut **transaction).await?;
    }
    Ok(())
}

async fn insert_conversations(
    transaction: &mut Transaction,
    conversations: &[ConversationRow],
) -> Result<(), sqlx::Error> {
    for chunk in conversations.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO conversations \
                 (conversation_id, conversation_type, title, created_by, is_e2ee_enabled, \
                  created_at, updated_at) ",
        );
        insert.push_values(chunk, |mut row, conversation| {
            let created_at = stored_time(conversation.created_at);
            row.push_bind(conversation.conversation_id)
                .push_bind(conversation.conversation_type)
                .push_bind(conversation.title.clone())
                .push_bind(conversation.created_by)
                .push_bind(conversation.is_e2ee_enabled)
                .push_bind(created_at.clone())
                .push_bind(created_at);
        });
        insert.build().execute(&mut **transaction).await?;
    }

    let participants: Vec<(&ConversationRow, Uuid, &'static str)> = conversations
        .iter()
        .flat_map(|conversation| {
            conversation
                .participants
                .iter()
                .map(move |participant| (conversation, participant.user_id, participant.role))
        })
        .collect();
    for chunk in participants.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO conversation_participants (conversation_id, user_id, role, joined_at) ",
        );
        insert.push_values(chunk, |mut row, (conversation, user_id, role)| {
            row.push_bind(conversation.conversation_id)
                .push_bind(*user_id)
                .push_bind(*role)
                .push_bind(stored_time(conversation.created_at));
        });
        insert.build().execute(&mut **transaction).await?;
    }
    Ok(())
}

/// Moves each conversation's `updated_at` forward to its newest message, never backward.
/// One statement per conversation: a batch touches few conversations, and SQLite runs each
/// statement in process without a network round trip.
async fn record_activity(
    transaction: &mut Transaction,
    activity: &[ConversationActivity],
) -> Result<(), sqlx::Error> {
    for item in activity {
        sqlx::query(
            "UPDATE conversations SET updated_at = max(updated_at, $1) \
             WHERE conversation_id = $2",
        )
        .bind(stored_time(item.last_message_at))
        .bind(item.conversation_id)
        .execute(&mut **transaction)
        .await?;
    }
    Ok(())
}

async fn insert_messages(
    transaction: &mut Transaction,
    messages: &[MessageRow],
) -> Result<(), sqlx::Error> {
    for chunk in messages.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages \
                 (message_id, conversation_id, sender_id, content, is_encrypted, message_type, \
                  metadata, sent_at, sequence, position) ",
        );
        insert.push_values(chunk, |mut row, message| {
            row.push_bind(message.message_id)
                .push_bind(message.conversation_id)
                .push_bind(message.sender_id)
                .push_bind(message.content.clone())
                .push_bind(message.is_encrypted)
                .push_bind(message.message_type)
                .push_bind(Json(message.metadata.clone()))
                .push_bind(stored_time(message.sent_at))
                .push_bind(to_sql_integer(message.sequence))
                .push_bind(to_sql_integer(message.position));
        });
        insert.build().execute(&mut **transaction).await?;
    }
    Ok(())
}

#[async_trait]
impl ReadModels for SqliteStore {
    async fn user(&self, user_id: Uuid) -> anyhow::Result<Option<UserView>> {
        let record: Option<UserRecord> = within(
            self.query_timeout,
            "reading a user",
            sqlx::query_as(SELECT_USER)
                .bind(user_id)
                .fetch_optional(&self.pool),
        )
        .await?;
        Ok(record.map(UserView::from))
    }

    async fn conversations_of(
        &self,
        member_id: Uuid,
        limit: u32,
        offset: u32,
    ) -> anyhow::Result<Vec<ConversationView>> {
        let records: Vec<ConversationParticipantRecord> = within(
            self.query_timeout,
            "reading a member's conversations",
            sqlx::query_as(SELECT_CONVERSATIONS_OF_MEMBER)
                .bind(member_id)
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(group_conversations(records))
    }

    async fn conversation_for_member(
        &self,
        conversation_id: Uuid,
        member_id: Uuid,
    ) -> anyhow::Result<Option<ConversationView>> {
        let records: Vec<ConversationParticipantRecord> = within(
            self.query_timeout,
            "reading a conversation",
            sqlx::query_as(SELECT_CONVERSATION_FOR_MEMBER)
                .bind(conversation_id)
                .bind(member_id)
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(group_conversations(records).into_iter().next())
    }

    async fn messages_page(
        &self,
        conversation_id: Uuid,
        cursor: Option<MessageCursor>,
        limit: u32,
    ) -> anyhow::Result<MessagePage> {
        let records: Vec<MessageRecord> = within(
            self.query_timeout,
            "reading messages",
            sqlx::query_as(SELECT_MESSAGES_PAGE)
                .bind(conversation_id)
                .bind(page_upper_bound(cursor))
                .bind(i64::from(limit) + 1)
                .fetch_all(&self.pool),
        )
        .await?;
        Ok(message_page(records, cursor, limit))
    }
}
