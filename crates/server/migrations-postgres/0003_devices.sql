-- PostgreSQL twin of migrations/0003_devices.sql: the same tables, columns and constraints in
-- PostgreSQL's types (BIGINT for INTEGER, DOUBLE PRECISION for REAL, BYTEA for BLOB,
-- identity columns for AUTOINCREMENT). A new migration is added to both directories.
-- Personalization (issue 5): enrollment tokens, enrolled devices, used nonces and
-- signing windows.

-- One-time enrollment tokens: only the SHA-256 of the token is stored.
CREATE TABLE enrollment_tokens (
    token_sha256 TEXT PRIMARY KEY,
    created_at   TEXT NOT NULL,
    used_at      TEXT,
    used_by      TEXT
);

-- Enrolled devices: the identity recorded at enrollment and the current credential.
CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    board_id      BIGINT NOT NULL,
    chip_id       BIGINT NOT NULL,
    hardware_uuid TEXT    NOT NULL,
    device_class  TEXT    NOT NULL,
    credential_id TEXT    NOT NULL,
    enrolled_at   TEXT    NOT NULL,
    revoked_at    TEXT
);

-- Every nonce ever signed (its SHA-256). The primary key is the uniqueness check:
-- inserting is checking.
CREATE TABLE nonces (
    nonce_sha256 BYTEA PRIMARY KEY,
    device_id    TEXT    NOT NULL,
    used_at      BIGINT NOT NULL
);

-- Signing windows by (device class, build). No row: open while the build is a
-- published release of the class (a newly published build is signed by default).
CREATE TABLE signing_windows (
    class      TEXT    NOT NULL,
    build_id   TEXT    NOT NULL,
    open       BIGINT NOT NULL,
    changed_at TEXT    NOT NULL,
    PRIMARY KEY (class, build_id)
);

-- Signing-window lookups go by (class, build id).
CREATE INDEX releases_by_class_build ON releases (class, build_id);
