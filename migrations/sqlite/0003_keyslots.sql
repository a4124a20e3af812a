-- Key slots: the root key (with the store id) wrapped once per way in:
-- the passphrase, the recovery key, unattended key files. In the clear:
-- slot id, kind, KDF name and parameters, salt. The wrap's additional data
-- binds all of them. docs/keys.md describes the hierarchy.
CREATE TABLE keyslots (
    slot_id         INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('passphrase', 'recovery', 'key_file')),
    kdf             TEXT    NOT NULL,
    kdf_memory_kib  INTEGER NOT NULL,
    kdf_iterations  INTEGER NOT NULL,
    kdf_parallelism INTEGER NOT NULL,
    salt            BLOB    NOT NULL,
    wrapped_root    BLOB    NOT NULL
);
