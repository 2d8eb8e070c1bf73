-- Owned by the messages projection: one row per `MessageSent`. There is no foreign key to
-- `conversations`, because that table belongs to another projection that may be behind.
CREATE TABLE messages (
    message_id UUID PRIMARY KEY,
    conversation_id UUID NOT NULL,
    sender_id UUID NOT NULL,
    content TEXT NOT NULL,
    is_encrypted BOOLEAN NOT NULL,
    message_type TEXT NOT NULL,
    metadata JSONB NOT NULL,
    sent_at TIMESTAMPTZ NOT NULL,
    -- The event's sequence in its conversation stream.
    sequence BIGINT NOT NULL,
    -- The log position of the commit that recorded the message.
    position BIGINT NOT NULL
);

-- Pages newest first, and rejects a second row for one stream sequence.
CREATE UNIQUE INDEX messages_conversation_sequence ON messages (conversation_id, sequence DESC);
