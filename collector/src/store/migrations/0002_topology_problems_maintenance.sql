-- 0002: topology and grouping on incidents, problem records, maintenance windows.
-- Every table of 0001 upgrades in place (ADD COLUMN); rows written before have NULLs there.

-- The view reads alerts.*: drop it while the table changes, recreate it after.
DROP VIEW IF EXISTS v_alerts_current;

ALTER TABLE alerts ADD COLUMN source VARCHAR;
ALTER TABLE alerts ADD COLUMN description VARCHAR;
ALTER TABLE alerts ADD COLUMN suppressed_by VARCHAR;
ALTER TABLE alerts ADD COLUMN flapping BOOLEAN DEFAULT false;

ALTER TABLE incidents ADD COLUMN impact VARCHAR;
ALTER TABLE incidents ADD COLUMN urgency VARCHAR;
ALTER TABLE incidents ADD COLUMN signature VARCHAR;
ALTER TABLE incidents ADD COLUMN group_key VARCHAR;
ALTER TABLE incidents ADD COLUMN nodes_affected INTEGER DEFAULT 1;
ALTER TABLE incidents ADD COLUMN symptoms INTEGER DEFAULT 0;
ALTER TABLE incidents ADD COLUMN flapping BOOLEAN DEFAULT false;
ALTER TABLE incidents ADD COLUMN merged_into BIGINT;
ALTER TABLE incidents ADD COLUMN problem_id BIGINT;

ALTER TABLE incident_alerts ADD COLUMN node VARCHAR;

ALTER TABLE tickets ADD COLUMN problem_id BIGINT;
ALTER TABLE tickets ADD COLUMN workaround VARCHAR;

ALTER TABLE problems ADD COLUMN number VARCHAR;
ALTER TABLE problems ADD COLUMN rule VARCHAR;
ALTER TABLE problems ADD COLUMN site VARCHAR;
ALTER TABLE problems ADD COLUMN node VARCHAR;
ALTER TABLE problems ADD COLUMN group_key VARCHAR;
ALTER TABLE problems ADD COLUMN category VARCHAR;
ALTER TABLE problems ADD COLUMN kb VARCHAR;
ALTER TABLE problems ADD COLUMN incident_count INTEGER DEFAULT 0;
ALTER TABLE problems ADD COLUMN last_incident_at TIMESTAMP;
ALTER TABLE problems ADD COLUMN known_error_at TIMESTAMP;

-- Maintenance windows: from policy.toml (created_by = 'policy') or made through the API.
CREATE TABLE maintenance (
    id            BIGINT PRIMARY KEY,
    name          VARCHAR NOT NULL,
    "match"       JSON NOT NULL,
    starts_at     TIMESTAMP NOT NULL,
    ends_at       TIMESTAMP NOT NULL,
    every_ms      BIGINT,
    reason        VARCHAR NOT NULL,
    created_by    VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    cancelled_at  TIMESTAMP
);

CREATE VIEW v_alerts_current AS
SELECT * FROM alerts
QUALIFY row_number() OVER (PARTITION BY alert_key ORDER BY id DESC) = 1;
