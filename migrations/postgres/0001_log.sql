-- Store metadata, the keyring and the event log.
-- In the clear: KDF parameters, salt, sequence numbers, key ids, hashes.
CREATE TABLE store_meta (
    singleton       SMALLINT PRIMARY KEY CHECK (singleton = 1),
    kdf_memory_kib  INTEGER  NOT NULL,
    kdf_iterations  INTEGER  NOT NULL,
    kdf_parallelism INTEGER  NOT NULL,
    salt            BYTEA    NOT NULL,
    head_seq        BIGINT   NOT NULL,
    head_hash       BYTEA    NOT NULL
);

-- Data keys (and the store id) wrapped under the key-encryption key.
CREATE TABLE keyring (
    key_id      INTEGER PRIMARY KEY,
    wrapped_key BYTEA   NOT NULL
);

CREATE TABLE events (
    seq       BIGINT  PRIMARY KEY,
    key_id    INTEGER NOT NULL,
    prev_hash BYTEA   NOT NULL,
    hash      BYTEA   NOT NULL,
    body      BYTEA   NOT NULL
);

-- The log is append-only; refuse edits made through this schema.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
