-- The dashboard (issue 17): its users and sessions, and indexes its pages read by.
-- Portable between SQLite and PostgreSQL 15: standard types, times as Unix milliseconds.

-- A person who may open the dashboard: `viewer` reads, `operator` may also halt, resume
-- and pause rollouts. `password_hash` is an argon2id PHC string (salt and parameters in it).
CREATE TABLE dashboard_users (
    name          TEXT   PRIMARY KEY,
    role          TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- A signed-in browser. The cookie holds a random id; only its SHA-256 is stored, so a
-- copy of the database signs no one in. `csrf` is the token every form of the session
-- must carry. The admin token's sessions name the user `admin`, not a row above.
CREATE TABLE dashboard_sessions (
    id_sha256  TEXT   PRIMARY KEY,
    user_name  TEXT   NOT NULL,
    role       TEXT   NOT NULL,
    csrf       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_ms);

-- Failures page: devices by their last error; the cause and fix of a code.
CREATE INDEX device_state_by_error ON device_state (last_error_code, status);
CREATE INDEX event_reports_by_code ON event_reports (error_code, received_ms);
-- Fleet page and the per-hour chart: outcomes by time, counted from the index alone.
CREATE INDEX event_reports_by_outcome ON event_reports (event, received_ms);
-- Fleet page: devices by class and version.
CREATE INDEX device_state_by_class_version ON device_state (device_class, version);
-- Rollout chart: attempts and failures over time.
CREATE INDEX rollout_devices_by_time ON rollout_devices (rollout_id, epoch, attempted_ms);
