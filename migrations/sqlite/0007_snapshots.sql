-- Sealed snapshots of the projection and the app registry, each at one log
-- record, split into chunks. In the clear: the record's sequence number and
-- hash, the key id, the chunk numbers and sizes. Mutable: old snapshots are
-- deleted, and all of them when data is erased.
CREATE TABLE snapshots (
    seq    INTEGER NOT NULL,
    chunk  INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    key_id INTEGER NOT NULL,
    hash   BLOB    NOT NULL,
    body   BLOB    NOT NULL,
    PRIMARY KEY (seq, chunk)
);
