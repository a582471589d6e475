-- Chunked payloads: one row per release (class, version), the chunk payload and its
-- index in the object store. The row is written only after both are stored.
CREATE TABLE chunk_payloads (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    class          TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    payload_key    TEXT    NOT NULL,
    payload_size   INTEGER NOT NULL,
    payload_sha256 TEXT    NOT NULL,
    index_key      TEXT    NOT NULL,
    index_size     INTEGER NOT NULL,
    index_sha256   TEXT    NOT NULL,
    hints          TEXT    NOT NULL,
    created_at     TEXT    NOT NULL,
    UNIQUE (class, version)
);
CREATE INDEX chunk_payloads_payload_sha256 ON chunk_payloads (payload_sha256);
CREATE INDEX chunk_payloads_index_sha256 ON chunk_payloads (index_sha256);
