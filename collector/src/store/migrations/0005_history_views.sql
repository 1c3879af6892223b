-- 0005: history that retention moved to Parquet stays queryable.
-- `*_archive` views read the exported files; they are empty here and are replaced when the
-- collector opens the store with an archive folder ([store] archive_dir). `*_all` is the
-- live table plus its archive, and the analytics views that count history read those.

-- One row per retention run that committed: its rows left the live tables in that transaction,
-- so its staged Parquet files must be published (a staged run without a row is discarded).
CREATE TABLE archive_batches (
    batch        VARCHAR PRIMARY KEY,
    committed_at TIMESTAMP NOT NULL,
    alerts       BIGINT NOT NULL,
    incidents    BIGINT NOT NULL,
    incident_alerts BIGINT NOT NULL
);

CREATE VIEW alerts_archive AS SELECT * FROM alerts WHERE false;
CREATE VIEW incidents_archive AS SELECT * FROM incidents WHERE false;
CREATE VIEW incident_alerts_archive AS SELECT * FROM incident_alerts WHERE false;

CREATE VIEW alerts_all AS
SELECT * FROM alerts UNION ALL BY NAME SELECT * FROM alerts_archive;
CREATE VIEW incidents_all AS
SELECT * FROM incidents UNION ALL BY NAME SELECT * FROM incidents_archive;
CREATE VIEW incident_alerts_all AS
SELECT * FROM incident_alerts UNION ALL BY NAME SELECT * FROM incident_alerts_archive;

CREATE OR REPLACE VIEW v_incidents_daily AS
SELECT
    date_trunc('day', opened_at) AS day,
    site,
    priority,
    count(*) AS incidents,
    count(*) FILTER (WHERE state = 'merged') AS merged,
    count(resolved_at) AS resolved,
    sum(symptoms) AS symptoms,
    avg(epoch_ms(resolved_at) - epoch_ms(opened_at)) AS mean_duration_ms
FROM incidents_all
GROUP BY ALL;

CREATE OR REPLACE VIEW v_top_problems AS
SELECT
    p.id AS problem_id,
    p.number,
    p.state,
    p.title,
    p.site,
    p.node,
    p.rule,
    p.kb,
    p.workaround,
    p.incident_count,
    (SELECT count(*) FROM problem_incidents pi JOIN incidents_all i ON i.id = pi.incident_id
      WHERE pi.problem_id = p.id AND i.opened_at >= now()::TIMESTAMP - INTERVAL 30 DAY) AS incidents_30d,
    p.opened_at,
    p.last_incident_at
FROM problems p
ORDER BY p.incident_count DESC, p.last_incident_at DESC;

CREATE OR REPLACE VIEW v_noisy_nodes AS
SELECT
    a.site,
    a.node,
    count(*) FILTER (WHERE a.state = 'firing') AS firing,
    count(*) FILTER (WHERE a.state = 'firing' AND a.changed_at >= now()::TIMESTAMP - INTERVAL 7 DAY) AS firing_7d,
    count(*) FILTER (WHERE a.flapping) AS flapping,
    count(*) FILTER (WHERE a.suppressed_by IS NOT NULL) AS suppressed,
    count(DISTINCT a.rule) AS rules,
    (SELECT count(*) FROM incidents_all i WHERE i.site = a.site AND i.node = a.node) AS incidents,
    max(a.changed_at) AS last_alert_at
FROM alerts_all a
GROUP BY a.site, a.node
ORDER BY firing DESC;
