-- Work done once (issue 18): one lease per periodic job (the timestamp re-signing, the
-- silent-device watch). A replica does a job only while it holds the job's unexpired lease;
-- when the holder dies its lease expires and another replica takes it. Unix milliseconds.
-- The same text is the PostgreSQL twin (BIGINT has INTEGER affinity in SQLite).
CREATE TABLE leases (
    job        TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_ms BIGINT NOT NULL
);
