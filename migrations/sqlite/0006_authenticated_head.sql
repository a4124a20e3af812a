-- The head (sequence number and hash of the last record) carries a MAC under
-- a key derived from the root key, updated in the same transaction as the
-- head: a head rewritten without the key (a cut tail) is caught at unlock.
-- NULL only before the first authenticated commit.
ALTER TABLE store_meta ADD COLUMN head_mac BLOB;
