-- The position of the last log commit each projection applied. A projector advances its row
-- in the same transaction as its writes, and only from the position it read, so two workers
-- never apply the same commit twice.
CREATE TABLE projection_checkpoints (
    projection TEXT PRIMARY KEY,
    position BIGINT NOT NULL CHECK (position >= 0),
    -- When the last applied commit was recorded in the log; NULL before the first batch.
    last_recorded_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL
);

INSERT INTO projection_checkpoints (projection, position, updated_at)
VALUES ('users', 0, now()), ('conversations', 0, now()), ('messages', 0, now());
