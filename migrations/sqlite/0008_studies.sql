-- Research studies. The studies themselves, the owner's consents and
-- withdrawals are events in the encrypted log; these tables hold only what
-- is in the clear by design.

-- The store's receipt-signing key pair: the public key (a JWK, published at
-- /.well-known/jwks.json) and the private key wrapped under a key derived
-- from the root key.
CREATE TABLE signing_key (
    singleton           INTEGER PRIMARY KEY CHECK (singleton = 1),
    kid                 TEXT    NOT NULL,
    public_jwk          TEXT    NOT NULL,
    wrapped_private_key BLOB    NOT NULL
);

-- Client assertions already used at the token endpoint (RFC 7523 `jti`),
-- by SHA-256 of (client id, jti), until the assertion would have expired.
CREATE TABLE spent_assertions (
    digest     BLOB    PRIMARY KEY,
    expires_us INTEGER NOT NULL
);
CREATE INDEX spent_assertions_expiry ON spent_assertions (expires_us);
