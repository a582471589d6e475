-- Rollouts (issue 16): a release of a class reaches its cohort in waves; the halt rule
-- counts attempts and failures per wave from event reports. Times are Unix milliseconds.

-- One rollout per (class, version): the release is held back from every device until its
-- wave opens. `state`: running, paused, halted. The schedule runs on the rollout's own
-- clock: time since `started_ms` minus the time spent paused or halted (`held_ms`, plus
-- now - `held_since_ms` while held), so a resumed rollout continues where it stopped.
CREATE TABLE rollouts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    class         TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    audience      TEXT,
    waves         TEXT    NOT NULL,
    threshold     REAL    NOT NULL,
    min_attempts  INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    created_ms    INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    held_ms       INTEGER NOT NULL DEFAULT 0,
    held_since_ms INTEGER,
    -- Counting restarts at each resume: attempts of an earlier epoch no longer count.
    epoch         INTEGER NOT NULL DEFAULT 0,
    changed_ms    INTEGER NOT NULL,
    UNIQUE (class, version)
);

-- Each device that attempted the rollout's release (per epoch), its wave, and whether it
-- failed in a way that counts: the per-wave counters are counts over these rows.
CREATE TABLE rollout_devices (
    rollout_id   INTEGER NOT NULL REFERENCES rollouts (id),
    epoch        INTEGER NOT NULL,
    device_id    TEXT    NOT NULL,
    wave         INTEGER NOT NULL,
    attempted_ms INTEGER NOT NULL,
    -- failed (a code that blames the release), rolled_back, silent; NULL while none.
    failure      TEXT,
    failure_code TEXT,
    failed_ms    INTEGER,
    PRIMARY KEY (rollout_id, epoch, device_id)
);
CREATE INDEX rollout_devices_by_wave ON rollout_devices (rollout_id, epoch, wave);

-- Every halt, pause and resume, with the numbers that triggered an automatic halt.
CREATE TABLE rollout_changes (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
    at_ms      INTEGER NOT NULL,
    action     TEXT    NOT NULL,
    by         TEXT    NOT NULL,
    wave       INTEGER,
    attempts   INTEGER,
    failures   INTEGER,
    lower_bound REAL,
    threshold  REAL,
    reason     TEXT
);
CREATE INDEX rollout_changes_by_rollout ON rollout_changes (rollout_id, at_ms);
