-- Releases: one row per (device class, version). Artifacts live in the object store
-- under the keys recorded here; the row is written only after they are stored.
CREATE TABLE releases (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    class           TEXT    NOT NULL,
    version         TEXT    NOT NULL,
    build_id        TEXT    NOT NULL,
    audience        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    image_size      INTEGER NOT NULL,
    image_sha256    TEXT    NOT NULL,
    payload_key     TEXT    NOT NULL,
    payload_size    INTEGER NOT NULL,
    payload_sha256  TEXT    NOT NULL,
    manifest_key    TEXT    NOT NULL,
    manifest_size   INTEGER NOT NULL,
    manifest_sha256 TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    UNIQUE (class, version)
);
CREATE INDEX releases_by_class ON releases (class);
