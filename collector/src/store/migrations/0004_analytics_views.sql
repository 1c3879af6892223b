-- 0004: views for operators' analytics (docs/ANALYTICS.md defines every figure).
-- Times are TIMESTAMP (UTC); durations are milliseconds (BIGINT / DOUBLE for means).

-- Per ticket: time to acknowledge, time to resolve (wall clock and net of pending time, in
-- the priority's SLA calendar), the targets and whether they were breached.
CREATE VIEW v_ticket_sla AS
SELECT
    t.id AS ticket_id,
    t.number,
    t.kind,
    t.state,
    t.priority,
    t.category,
    t.site,
    t.node,
    t.assignment_group,
    t.assignee,
    t.incident_id,
    t.opened_at,
    t.acknowledged_at,
    t.resolved_at,
    t.closed_at,
    epoch_ms(t.acknowledged_at) - epoch_ms(t.opened_at) AS time_to_ack_ms,
    epoch_ms(t.resolved_at) - epoch_ms(t.opened_at) AS time_to_resolve_ms,
    CASE WHEN t.resolved_at IS NOT NULL THEN t.resolution_elapsed_ms END AS time_to_resolve_net_ms,
    t.response_target_ms,
    t.resolution_target_ms,
    t.response_due_at,
    t.resolution_due_at,
    t.response_breached_at IS NOT NULL AS response_breached,
    t.resolution_breached_at IS NOT NULL AS resolution_breached,
    t.escalation_level,
    t.reopened,
    t.cause_code
FROM tickets t;

-- MTTA / MTTR per day (of opening), priority, category, site and assignment group.
CREATE VIEW v_mtta_mttr AS
SELECT
    date_trunc('day', opened_at) AS day,
    priority,
    category,
    site,
    assignment_group,
    count(*) AS tickets,
    count(acknowledged_at) AS acknowledged,
    count(resolved_at) AS resolved,
    avg(time_to_ack_ms) AS mtta_ms,
    avg(time_to_resolve_ms) AS mttr_ms,
    avg(time_to_resolve_net_ms) AS mttr_net_ms,
    count(*) FILTER (WHERE response_breached) AS response_breached,
    count(*) FILTER (WHERE resolution_breached) AS resolution_breached
FROM v_ticket_sla
GROUP BY ALL;

-- Incidents per day (of opening), site and priority.
CREATE VIEW v_incidents_daily AS
SELECT
    date_trunc('day', opened_at) AS day,
    site,
    priority,
    count(*) AS incidents,
    count(*) FILTER (WHERE state = 'merged') AS merged,
    count(resolved_at) AS resolved,
    sum(symptoms) AS symptoms,
    avg(epoch_ms(resolved_at) - epoch_ms(opened_at)) AS mean_duration_ms
FROM incidents
GROUP BY ALL;

-- Problem records by how many incidents they link, with the last 30 days apart.
CREATE VIEW v_top_problems AS
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
    (SELECT count(*) FROM problem_incidents pi JOIN incidents i ON i.id = pi.incident_id
      WHERE pi.problem_id = p.id AND i.opened_at >= now()::TIMESTAMP - INTERVAL 30 DAY) AS incidents_30d,
    p.opened_at,
    p.last_incident_at
FROM problems p
ORDER BY p.incident_count DESC, p.last_incident_at DESC;

-- Nodes by how much they alert: firing transitions, flapping ones, incidents they caused.
CREATE VIEW v_noisy_nodes AS
SELECT
    a.site,
    a.node,
    count(*) FILTER (WHERE a.state = 'firing') AS firing,
    count(*) FILTER (WHERE a.state = 'firing' AND a.changed_at >= now()::TIMESTAMP - INTERVAL 7 DAY) AS firing_7d,
    count(*) FILTER (WHERE a.flapping) AS flapping,
    count(*) FILTER (WHERE a.suppressed_by IS NOT NULL) AS suppressed,
    count(DISTINCT a.rule) AS rules,
    (SELECT count(*) FROM incidents i WHERE i.site = a.site AND i.node = a.node) AS incidents,
    max(a.changed_at) AS last_alert_at
FROM alerts a
GROUP BY a.site, a.node
ORDER BY firing DESC;

-- Every escalation: the ticket, the level reached, why, by whom, who was told.
CREATE VIEW v_escalations AS
SELECT
    e.id AS event_id,
    e.ticket_id,
    t.number,
    t.priority,
    t.assignment_group,
    e.created_at AS escalated_at,
    CAST(json_extract(e.data, '$.escalation.level') AS INTEGER) AS level,
    json_extract_string(e.data, '$.escalation.name') AS level_name,
    json_extract_string(e.data, '$.escalation.triggers[0]') AS trigger,
    json_extract_string(e.data, '$.escalation.reason') AS reason,
    e.actor,
    json_extract(e.data, '$.escalation.targets') AS targets
FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id
WHERE e.kind = 'escalated';
