-- PostgreSQL twin of migrations/0006_events.sql: the same tables, columns and constraints in
-- PostgreSQL's types (BIGINT for INTEGER, DOUBLE PRECISION for REAL, BYTEA for BLOB,
-- identity columns for AUTOINCREMENT). A new migration is added to both directories.
-- Event reports (issue 14): every report a device delivered, the per-device current
-- state folded from them in the same transaction, and the phase samples the per-class
-- phase rates are computed from. Times are Unix milliseconds (UTC).

-- One row per (device, sequence): the primary key makes a retried batch change nothing.
CREATE TABLE event_reports (
    device_id      TEXT    NOT NULL,
    sequence       BIGINT NOT NULL,
    update_id      TEXT,
    event          TEXT    NOT NULL,
    result         TEXT    NOT NULL,
    event_time_ms  BIGINT NOT NULL,
    received_ms    BIGINT NOT NULL,
    device_class   TEXT    NOT NULL,
    version        TEXT,
    target_version TEXT,
    state          TEXT,
    machine        TEXT,
    error_code     TEXT,
    percent        DOUBLE PRECISION,
    body           TEXT    NOT NULL,
    PRIMARY KEY (device_id, sequence)
);
CREATE INDEX event_reports_by_received ON event_reports (received_ms);
CREATE INDEX event_reports_by_update ON event_reports (update_id);
CREATE INDEX event_reports_by_event ON event_reports (event, error_code);

-- What each reporting device is doing now.
CREATE TABLE device_state (
    device_id         TEXT PRIMARY KEY,
    device_class      TEXT    NOT NULL,
    version           TEXT,
    slot              TEXT,
    status            TEXT    NOT NULL,
    last_event        TEXT    NOT NULL,
    last_event_ms     BIGINT NOT NULL,
    last_sequence     BIGINT NOT NULL,
    last_report_ms    BIGINT NOT NULL,
    update_id         TEXT,
    from_version      TEXT,
    target_version    TEXT,
    update_state      TEXT,
    update_percent    DOUBLE PRECISION,
    update_started_ms BIGINT,
    payload_kind      TEXT,
    bytes_downloaded  BIGINT,
    phases            TEXT,
    last_error_code   TEXT,
    last_error_state  TEXT,
    last_error_machine TEXT,
    last_error_ms     BIGINT,
    rolled_back       BIGINT NOT NULL DEFAULT 0,
    silent_since_ms   BIGINT,
    outbox_dropped    BIGINT NOT NULL DEFAULT 0,
    outbox_full       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX device_state_by_status ON device_state (status, last_report_ms);

-- Phase durations and bytes of installed updates, by class: the per-class phase rates.
CREATE TABLE phase_samples (
    device_class TEXT    NOT NULL,
    phase        TEXT    NOT NULL,
    payload_kind TEXT,
    secs         DOUBLE PRECISION    NOT NULL,
    bytes        BIGINT,
    received_ms  BIGINT NOT NULL
);
CREATE INDEX phase_samples_by_class ON phase_samples (device_class, received_ms);
