-- The read models of the embedded store, the same tables as the PostgreSQL migrations with
-- SQLite types: ids are 16-byte BLOBs, booleans are INTEGER 0 or 1, JSON is TEXT, and times
-- are TEXT in the fixed-width form `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so that comparing the text
-- compares the times.

CREATE TABLE projection_checkpoints (
    projection TEXT PRIMARY KEY,
    position INTEGER NOT NULL CHECK (position >= 0),
    last_recorded_at TEXT,
    updated_at TEXT NOT NULL
);

INSERT INTO projection_checkpoints (projection, position, updated_at)
VALUES
    ('users', 0, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    ('conversations', 0, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    ('messages', 0, strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'));

CREATE TABLE users (
    user_id BLOB PRIMARY KEY,
    email TEXT NOT NULL,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url TEXT,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX users_email ON users (email);
CREATE INDEX users_username_lower ON users (lower(username));

CREATE TABLE conversations (
    conversation_id BLOB PRIMARY KEY,
    conversation_type TEXT NOT NULL,
    title TEXT NOT NULL,
    created_by BLOB NOT NULL,
    is_e2ee_enabled INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE conversation_participants (
    conversation_id BLOB NOT NULL REFERENCES conversations (conversation_id),
    user_id BLOB NOT NULL,
    role TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

CREATE INDEX conversation_participants_user ON conversation_participants (user_id);

CREATE TABLE messages (
    message_id BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL,
    sender_id BLOB NOT NULL,
    content TEXT NOT NULL,
    is_encrypted INTEGER NOT NULL,
    message_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    position INTEGER NOT NULL
);

CREATE UNIQUE INDEX messages_conversation_sequence ON messages (conversation_id, sequence DESC);
