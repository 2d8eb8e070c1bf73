//! The read models on PostgreSQL: batch writes with arrays and `UNNEST`, so that a batch of
//! any size costs a fixed number of statements, and the queries.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
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
use crate::queries::{ConversationView, MessageCursor, MessagePage, ReadModels, UserView};

/// The channel on which every committed batch announces `<projection>:<position>`.
pub(crate) const POSITIONS_CHANNEL: &str = "projection_positions";

#[derive(Clone)]
pub(crate) struct PostgresStore {
    pool: PgPool,
    query_timeout: Duration,
}

impl PostgresStore {
    pub(crate) fn new(pool: PgPool, query_timeout: Duration) -> PostgresStore {
        PostgresStore {
            pool,
            query_timeout,
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    /// Reads `name`'s checkpoint, creating it at position 0 when the row is missing.
    pub(crate) async fn checkpoint(&self, name: ProjectionName) -> Result<Checkpoint, StoreError> {
        within(self.query_timeout, "reading a checkpoint", async {
            sqlx::query(
                "INSERT INTO projection_checkpoints (projection, position, updated_at) \
                 VALUES ($1, 0, now()) ON CONFLICT (projection) DO NOTHING",
            )
            .bind(name.as_str())
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
        let mut transaction = self.pool.begin().await?;

        // Moving the checkpoint first takes its row lock, so a second worker on the same
        // projection waits here until this batch commits and then updates no row.
        let advanced = sqlx::query(ADVANCE_CHECKPOINT)
            .bind(to_sql_integer(batch.to_position))
            .bind(batch.last_recorded_at)
            .bind(batch.applied_at)
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

        // Delivered to listeners when the transaction commits, and never if it rolls back.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(POSITIONS_CHANNEL)
            .bind(format!("{}:{}", batch.name, batch.to_position))
            .execute(&mut *transaction)
            .await?;

        before_commit().map_err(StoreError::RejectedBeforeCommit)?;
        transaction.commit().await?;
        Ok(ApplyOutcome::Committed)
    }
}

type Transaction = sqlx::Transaction<'static, sqlx::Postgres>;

async fn insert_users(transaction: &mut Transaction, users: &[UserRow]) -> Result<(), sqlx::Error> {
    if users.is_empty() {
        return Ok(());
    }
    let mut user_ids = Vec::with_capacity(users.len());
    let mut emails = Vec::with_capacity(users.len());
    let mut usernames = Vec::with_capacity(users.len());
    let mut display_names = Vec::with_capacity(users.len());
    let mut registered_at = Vec::with_capacity(users.len());

    for user in users {
        user_ids.push(user.user_id);
        emails.push(user.email.as_str());
        usernames.push(user.username.as_str());
        display_names.push(user.display_name.as_str());
        registered_at.push(user.registered_at);
    }

    sqlx::query(
        "INSERT INTO users \
             (user_id, email, username, display_name, avatar_url, status, created_at, updated_at) \
         SELECT u.user_id, u.email, u.username, u.display_name, NULL, 'offline', \
                u.registered_at, u.registered_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
             AS u(user_id, email, username, display_name, registered_at)",
    )
    .bind(user_ids)
    .bind(emails)
    .bind(usernames)
    .bind(display_names)
    .bind(registered_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

async fn insert_conversations(
    transaction: &mut Transaction,
    conversations: &[ConversationRow],
) -> Result<(), sqlx::Error> {
    if conversations.is_empty() {
        return Ok(());
    }
    let mut conversation_ids = Vec::with_capacity(conversations.len());
    let mut types = Vec::with_capacity(conversations.len());
    let mut titles = Vec::with_capacity(conversations.len());
    let mut creators = Vec::with_capacity(conversations.len());
    let mut e2ee = Vec::with_capacity(conversations.len());
    let mut created_at = Vec::with_capacity(conversations.len());
    let mut participant_conversations = Vec::new();
    let mut participant_ids = Vec::new();
    let mut participant_roles = Vec::new();
    let mut participant_joined_at = Vec::new();

    for conversation in conversations {
        conversation_ids.push(conversation.conversation_id);
        types.push(conversation.conversation_type);
        titles.push(conversation.title.as_str());
        creators.push(conversation.created_by);
        e2ee.push(conversation.is_e2ee_enabled);
        created_at.push(conversation.created_at);
        for participant in &conversation.participants {
            participant_conversations.push(conversation.conversation_id);
            participant_ids.push(participant.user_id);
            participant_roles.push(participant.role);
            participant_joined_at.push(conversation.created_at);
        }
    }

    sqlx::query(
        "INSERT INTO conversations \
             (conversation_id, conversation_type, title, created_by, is_e2ee_enabled, \
              created_at, updated_at) \
         SELECT c.conversation_id, c.conversation_type, c.title, c.created_by, \
                c.is_e2ee_enabled, c.created_at, c.created_at \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bool[], \
                     $6::timestamptz[]) \
             AS c(conversation_id, conversation_type, title, created_by, is_e2ee_enabled, \
                  created_at)",
    )
    .bind(conversation_ids)
    .bind(types)
    .bind(titles)
    .bind(creators)
    .bind(e2ee)
    .bind(created_at)
    .execute(&mut **transaction)
    .await?;

    sqlx::query(
        "INSERT INTO conversation_participants (conversation_id, user_id, role, joined_at) \
         SELECT p.conversation_id, p.user_id, p.role, p.joined_at \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) \
             AS p(conversation_id, user_id, role, joined_at)",
    )
    .bind(participant_conversations)
    .bind(participant_ids)
    .bind(participant_roles)
    .bind(participant_joined_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Moves each conversation's `updated_at` forward to its newest message, never backward.
async fn record_activity(
    transaction: &mut Transaction,
    activity: &[ConversationActivity],
) -> Result<(), sqlx::Error> {
    if activity.is_empty() {
        return Ok(());
    }
    let conversation_ids: Vec<Uuid> = activity.iter().map(|item| item.conversation_id).collect();
    let times: Vec<DateTime<Utc>> = activity.iter().map(|item| item.last_message_at).collect();
    sqlx::query(
        "UPDATE conversations AS c \
         SET updated_at = GREATEST(c.updated_at, a.last_message_at) \
         FROM UNNEST($1::uuid[], $2::timestamptz[]) AS a(conversation_id, last_message_at) \
         WHERE c.conversation_id = a.conversation_id",
    )
    .bind(conversation_ids)
    .bind(times)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

async fn insert_messages(
    transaction: &mut Transaction,
    messages: &[MessageRow],
) -> Result<(), sqlx::Error> {
    if messages.is_empty() {
        return Ok(());
    }
    let mut message_ids = Vec::with_capacity(messages.len());
    let mut conversation_ids = Vec::with_capacity(messages.len());
    let mut sender_ids = Vec::with_capacity(messages.len());
    let mut contents = Vec::with_capacity(messages.len());
    let mut encrypted = Vec::with_capacity(messages.len());
    let mut types = Vec::with_capacity(messages.len());
    let mut metadata = Vec::with_capacity(messages.len());
    let mut sent_at = Vec::with_capacity(messages.len());
    let mut sequences = Vec::with_capacity(messages.len());
    let mut positions = Vec::with_capacity(messages.len());

    for message in messages {
        message_ids.push(message.message_id);
        conversation_ids.push(message.conversation_id);
        sender_ids.push(message.sender_id);
        contents.push(message.content.as_str());
        encrypted.push(message.is_encrypted);
        types.push(message.message_type);
        metadata.push(Json(&message.metadata));
        sent_at.push(message.sent_at);
        sequences.push(to_sql_integer(message.sequence));
        positions.push(to_sql_integer(message.position));
    }

    sqlx::query(
        "INSERT INTO messages \
             (message_id, conversation_id, sender_id, content, is_encrypted, message_type, \
              metadata, sent_at, sequence, position) \
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::bool[], \
                              $6::text[], $7::jsonb[], $8::timestamptz[], $9::int8[], \
                              $10::int8[])",
    )
    .bind(message_ids)
    .bind(conversation_ids)
    .bind(sender_ids)
    .bind(contents)
    .bind(encrypted)
    .bind(types)
    .bind(metadata)
    .bind(sent_at)
    .bind(sequences)
    .bind(positions)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

#[async_trait]
impl ReadModels for PostgresStore {
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
