-- Store metadata, the keyring and the event log.
-- In the clear: KDF parameters, salt, sequence numbers, key ids, hashes.
CREATE TABLE store_meta (
    singleton       INTEGER PRIMARY KEY CHECK (singleton = 1),
    kdf_memory_kib  INTEGER NOT NULL,
    kdf_iterations  INTEGER NOT NULL,
    kdf_parallelism INTEGER NOT NULL,
    salt            BLOB    NOT NULL,
    head_seq        INTEGER NOT NULL,
    head_hash       BLOB    NOT NULL
);

-- Data keys (and the store id) wrapped under the key-encryption key.
CREATE TABLE keyring (
    key_id      INTEGER PRIMARY KEY,
    wrapped_key BLOB    NOT NULL
);

CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,
    key_id    INTEGER NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL,
    body      BLOB    NOT NULL
);

-- The log is append-only; refuse edits made through this schema.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
