-- The dashboard's per-hour chart (issue 17): outcomes counted per hour as reports are
-- stored (`dashboard::hourly`, in the transaction that stores them), so the chart reads
-- at most 100 rows instead of counting a day of reports. `hour`: received_ms / 3600000.
-- Portable between SQLite and PostgreSQL 15.
CREATE TABLE dashboard_hourly (
    hour  BIGINT NOT NULL,
    event TEXT   NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (hour, event)
);

-- The reports stored before this migration, counted once.
INSERT INTO dashboard_hourly (hour, event, n)
SELECT received_ms / 3600000, event, COUNT(*) FROM event_reports
WHERE event IN ('installed', 'failed', 'committed', 'rolled_back')
GROUP BY received_ms / 3600000, event;
