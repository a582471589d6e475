-- Tailored deltas: one row per (class, from_version, to_version). The artifact is in
-- the object store under `key`; the row is written only after it is stored.
CREATE TABLE deltas (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    class        TEXT    NOT NULL,
    from_version TEXT    NOT NULL,
    to_version   TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    UNIQUE (class, from_version, to_version)
);
