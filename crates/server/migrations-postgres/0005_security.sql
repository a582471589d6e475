-- PostgreSQL twin of migrations/0005_security.sql: the same tables, columns and constraints in
-- PostgreSQL's types (BIGINT for INTEGER, DOUBLE PRECISION for REAL, BYTEA for BLOB,
-- identity columns for AUTOINCREMENT). A new migration is added to both directories.
-- Security review (issue 20).

-- The seal root hash of each release: the signing service signs only the root hashes a
-- (class, build) published, read in the same statement as enrollment and the signing window.
-- Rows published before this column existed are filled in from their stored manifests when
-- the server opens its data directory (`DataDir::open`); until then they sign nothing.
ALTER TABLE releases ADD COLUMN seal_root TEXT;
DROP INDEX releases_by_class_build;
CREATE INDEX releases_by_class_build_root ON releases (class, build_id, seal_root);

-- Enrollment tokens may be bound to one device id and class when they are made, and only a
-- re-enrollment token (made by an operator for that device) enrolls over an existing or
-- revoked device.
ALTER TABLE enrollment_tokens ADD COLUMN device_id TEXT;
ALTER TABLE enrollment_tokens ADD COLUMN device_class TEXT;
ALTER TABLE enrollment_tokens ADD COLUMN reenroll BIGINT NOT NULL DEFAULT 0;
