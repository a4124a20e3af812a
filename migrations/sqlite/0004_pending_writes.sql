-- Writes accepted while the store is locked.
-- In the clear: the pending key's public half, arrival sequence numbers and
-- sizes. Each batch is sealed (HPKE) to the public key; its private half is
-- wrapped under a key derived from the root key.
CREATE TABLE pending_key (
    singleton           INTEGER PRIMARY KEY CHECK (singleton = 1),
    public_key          BLOB    NOT NULL,
    wrapped_private_key BLOB    NOT NULL
);

-- AUTOINCREMENT: arrival numbers are never reused after a merge.
CREATE TABLE pending_writes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    body BLOB    NOT NULL
);
