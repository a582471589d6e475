-- Entitlements and cohorts (issue 16): what the operator knows about each device (tenant,
-- region, tags), which devices may get which releases, and a rollout's cohort by those.
-- Times are Unix milliseconds (BIGINT). Portable between SQLite and PostgreSQL 15.

-- A device's tenant, region and tags, set by the operator (`ferry entitlement set-tags`,
-- `PUT /v1/admin/devices/ID/tags`). `tags`: sorted, comma-separated, '' for none.
CREATE TABLE device_tags (
    device_id  TEXT   PRIMARY KEY,
    tenant     TEXT,
    region     TEXT,
    tags       TEXT   NOT NULL DEFAULT '',
    changed_ms BIGINT NOT NULL
);

-- Grants: the devices `selector` matches (cohort syntax: tenant:X,region:Y,tag:Z,…, or
-- `all`) may get release `version` of `class` ('*': every release of the class). A release
-- with any grant row, revoked or not, is restricted: only devices an unrevoked grant
-- matches are entitled to it. Rows are never deleted, so revoking the last grant keeps the
-- release restricted. (PostgreSQL: `id BIGSERIAL PRIMARY KEY`.)
CREATE TABLE entitlements (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    class      TEXT   NOT NULL,
    version    TEXT   NOT NULL,
    selector   TEXT   NOT NULL,
    granted_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
CREATE INDEX entitlements_by_class ON entitlements (class, version);

-- A rollout's cohort in the same syntax (NULL: its `audience`, or every device).
ALTER TABLE rollouts ADD COLUMN cohort TEXT;

-- Deadlines and deferrals (issue 16): after `deadline_ms` devices install at their first
-- allowed moment (the maintenance window no longer holds them); a device may defer the
-- release up to `max_deferral_ms` after its first deferral (NULL: up to the deadline);
-- `emergency` (0/1) opens every wave at once and refuses deferrals.
ALTER TABLE rollouts ADD COLUMN deadline_ms BIGINT;
ALTER TABLE rollouts ADD COLUMN max_deferral_ms BIGINT;
ALTER TABLE rollouts ADD COLUMN emergency INTEGER NOT NULL DEFAULT 0;

-- A device's deferral of a rollout's release: until when, and when it first deferred.
CREATE TABLE rollout_deferrals (
    rollout_id INTEGER NOT NULL REFERENCES rollouts (id),
    device_id  TEXT    NOT NULL,
    first_ms   BIGINT  NOT NULL,
    until_ms   BIGINT  NOT NULL,
    PRIMARY KEY (rollout_id, device_id)
);
