-- Data keys: a random key per (source, type) and one for the records that
-- belong to no single source and type, each wrapped under a key derived
-- from the root key. Outside the append-only log and mutable on purpose:
-- erasure deletes rows here (crypto-shredding) and the log never changes.
-- In the clear: key ids and whether a key was rotated out. Which source and
-- type a key serves is sealed inside `wrapped_key`.
CREATE TABLE data_keys (
    key_id      INTEGER PRIMARY KEY,
    wrapped_key BLOB    NOT NULL,
    retired     INTEGER NOT NULL DEFAULT 0
);
