-- Writes accepted while the store is locked.
-- In the clear: the pending key's public half, arrival sequence numbers and
-- sizes. Each batch is sealed (HPKE) to the public key; its private half is
-- wrapped under a key derived from the root key.
CREATE TABLE pending_key (
    singleton           SMALLINT PRIMARY KEY CHECK (singleton = 1),
    public_key          BYTEA    NOT NULL,
    wrapped_private_key BYTEA    NOT NULL
);

CREATE TABLE pending_writes (
    seq  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body BYTEA  NOT NULL
);
-- Sealed batches are ciphertext: compressing them is wasted work.
ALTER TABLE pending_writes ALTER COLUMN body SET STORAGE EXTERNAL;
