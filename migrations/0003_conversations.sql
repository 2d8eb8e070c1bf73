-- Owned by the conversations projection: conversations and their participants from
-- `ConversationCreated`; `MessageSent` moves `updated_at` forward.
CREATE TABLE conversations (
    conversation_id UUID PRIMARY KEY,
    conversation_type TEXT NOT NULL,
    title TEXT NOT NULL,
    created_by UUID NOT NULL,
    is_e2ee_enabled BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE conversation_participants (
    conversation_id UUID NOT NULL REFERENCES conversations (conversation_id),
    user_id UUID NOT NULL,
    role TEXT NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- The conversations of one member.
CREATE INDEX conversation_participants_user ON conversation_participants (user_id);
