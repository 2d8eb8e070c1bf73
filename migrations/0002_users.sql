-- Owned by the users projection: one row per `UserRegistered`.
CREATE TABLE users (
    user_id UUID PRIMARY KEY,
    email TEXT NOT NULL,
    username TEXT NOT NULL,
    display_name TEXT NOT NULL,
    avatar_url TEXT,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

-- Not unique: the email and username claims in the log decide uniqueness, and a read model
-- that rejected a row would stop its projector instead.
CREATE INDEX users_email ON users (email);
CREATE INDEX users_username_lower ON users (lower(username));
