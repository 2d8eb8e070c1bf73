//! The rows the queries read, decoded the same way from both backends, and the query text the
//! two dialects share.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use uuid::Uuid;

use crate::queries::{
    ConversationView, MessageCursor, MessagePage, MessageView, ParticipantView, UserView,
};

pub(crate) const SELECT_USER: &str = "\
    SELECT user_id, email, username, display_name, avatar_url, status, created_at, updated_at \
    FROM users WHERE user_id = $1";

/// One row per participant of each conversation on the page, grouped by conversation.
pub(crate) const SELECT_CONVERSATIONS_OF_MEMBER: &str = "\
    WITH page AS ( \
        SELECT c.conversation_id, c.conversation_type, c.title, c.created_by, \
               c.is_e2ee_enabled, c.created_at, c.updated_at \
        FROM conversation_participants m \
        JOIN conversations c ON c.conversation_id = m.conversation_id \
        WHERE m.user_id = $1 \
        ORDER BY c.updated_at DESC, c.conversation_id DESC \
        LIMIT $2 OFFSET $3 \
    ) \
    SELECT page.conversation_id, page.conversation_type, page.title, page.created_by, \
           page.is_e2ee_enabled, page.created_at, page.updated_at, \
           p.user_id AS participant_id, p.role AS participant_role, \
           p.joined_at AS participant_joined_at \
    FROM page \
    JOIN conversation_participants p ON p.conversation_id = page.conversation_id \
    ORDER BY page.updated_at DESC, page.conversation_id DESC, p.joined_at, p.user_id";

/// One row per participant, or none when `$2` is not a participant.
pub(crate) const SELECT_CONVERSATION_FOR_MEMBER: &str = "\
    SELECT c.conversation_id, c.conversation_type, c.title, c.created_by, \
           c.is_e2ee_enabled, c.created_at, c.updated_at, \
           p.user_id AS participant_id, p.role AS participant_role, \
           p.joined_at AS participant_joined_at \
    FROM conversations c \
    JOIN conversation_participants p ON p.conversation_id = c.conversation_id \
    WHERE c.conversation_id = $1 \
      AND EXISTS ( \
          SELECT 1 FROM conversation_participants m \
          WHERE m.conversation_id = $1 AND m.user_id = $2 \
      ) \
    ORDER BY p.joined_at, p.user_id";

/// Messages older than sequence `$2`, newest first, at most `$3`.
pub(crate) const SELECT_MESSAGES_PAGE: &str = "\
    SELECT message_id, conversation_id, sender_id, content, is_encrypted, message_type, \
           metadata, sent_at, sequence \
    FROM messages \
    WHERE conversation_id = $1 AND sequence < $2 \
    ORDER BY sequence DESC \
    LIMIT $3";

pub(crate) const SELECT_CHECKPOINT: &str = "\
    SELECT position, last_recorded_at, updated_at \
    FROM projection_checkpoints WHERE projection = $1";

pub(crate) const SELECT_ALL_CHECKPOINTS: &str =
    "SELECT projection, position FROM projection_checkpoints";

/// Advances a checkpoint only from the position the batch started at, so that of two
/// workers applying the same batch, one updates no row and rolls back.
pub(crate) const ADVANCE_CHECKPOINT: &str = "\
    UPDATE projection_checkpoints \
    SET position = $1, last_recorded_at = $2, updated_at = $3 \
    WHERE projection = $4 AND position = $5";

#[derive(sqlx::FromRow)]
pub(crate) struct UserRecord {
    user_id: Uuid,
    email: String,
    username: String,
    display_name: String,
    avatar_url: Option<String>,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<UserRecord> for UserView {
    fn from(record: UserRecord) -> UserView {
        UserView {
            user_id: record.user_id,
            email: record.email,
            username: record.username,
            display_name: record.display_name,
            avatar_url: record.avatar_url,
            status: record.status,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

/// A conversation joined with one of its participants.
#[derive(sqlx::FromRow)]
pub(crate) struct ConversationParticipantRecord {
    conversation_id: Uuid,
    conversation_type: String,
    title: String,
    created_by: Uuid,
    is_e2ee_enabled: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    participant_id: Uuid,
    participant_role: String,
    participant_joined_at: DateTime<Utc>,
}

/// Folds rows sorted by conversation into one view per conversation, keeping their order.
pub(crate) fn group_conversations(
    records: Vec<ConversationParticipantRecord>,
) -> Vec<ConversationView> {
    let mut conversations: Vec<ConversationView> = Vec::new();
    for record in records {
        let participant = ParticipantView {
            user_id: record.participant_id,
            role: record.participant_role,
            joined_at: record.participant_joined_at,
        };
        match conversations.last_mut() {
            Some(last) if last.conversation_id == record.conversation_id => {
                last.participants.push(participant);
            }
            _ => conversations.push(ConversationView {
                conversation_id: record.conversation_id,
                conversation_type: record.conversation_type,
                title: record.title,
                created_by: record.created_by,
                is_e2ee_enabled: record.is_e2ee_enabled,
                participants: vec![participant],
                created_at: record.created_at,
                updated_at: record.updated_at,
            }),
        }
    }
    conversations
}

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRecord {
    message_id: Uuid,
    conversation_id: Uuid,
    sender_id: Uuid,
    content: String,
    is_encrypted: bool,
    message_type: String,
    metadata: Json<serde_json::Map<String, serde_json::Value>>,
    sent_at: DateTime<Utc>,
    sequence: i64,
}

impl From<MessageRecord> for MessageView {
    fn from(record: MessageRecord) -> MessageView {
        MessageView {
            message_id: record.message_id,
            conversation_id: record.conversation_id,
            sender_id: record.sender_id,
            content: record.content,
            is_encrypted: record.is_encrypted,
            message_type: record.message_type,
            metadata: record.metadata.0,
            sent_at: record.sent_at,
            sequence: from_sql_integer(record.sequence),
        }
    }
}

/// Returns the exclusive upper bound of a page's sequences, as the query binds it.
pub(crate) fn page_upper_bound(cursor: Option<MessageCursor>) -> i64 {
    cursor.map_or(i64::MAX, |cursor| to_sql_integer(cursor.before_sequence))
}

/// Builds a page from up to `limit + 1` rows, where the extra row only shows that older ones
/// exist.
/// With a `limit` of 0 the page is empty and `next` repeats the cursor when older messages
/// exist.
pub(crate) fn message_page(
    mut records: Vec<MessageRecord>,
    cursor: Option<MessageCursor>,
    limit: u32,
) -> MessagePage {
    let has_older = records.len() > limit as usize;
    records.truncate(limit as usize);
    let messages: Vec<MessageView> = records.into_iter().map(MessageView::from).collect();
    let next = has_older.then(|| MessageCursor {
        before_sequence: messages.last().map_or(
            cursor.map_or(u64::MAX, |cursor| cursor.before_sequence),
            |oldest| oldest.sequence,
        ),
    });
    MessagePage { messages, next }
}

/// Converts a position or sequence to the signed 64-bit integer both databases store. Log
/// positions and sequences stay far below `i64::MAX`, and larger values are clamped.
pub(crate) fn to_sql_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn from_sql_integer(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
