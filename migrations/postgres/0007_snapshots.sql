-- Sealed snapshots of the projection and the app registry, each at one log
-- record, split into chunks. In the clear: the record's sequence number and
-- hash, the key id, the chunk numbers and sizes. Mutable: old snapshots are
-- deleted, and all of them when data is erased.
CREATE TABLE snapshots (
    seq    BIGINT  NOT NULL,
    chunk  INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    hash   BYTEA   NOT NULL,
    body   BYTEA   NOT NULL,
    PRIMARY KEY (seq, chunk)
);
-- Chunks are ciphertext: compressing them is wasted work.
ALTER TABLE snapshots ALTER COLUMN body SET STORAGE EXTERNAL;
