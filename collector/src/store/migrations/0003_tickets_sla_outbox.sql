-- 0003: the service desk: full ticket record, SLA clocks and escalation, the durable outbox.
-- Columns are added in place; tickets written before have NULLs (or the defaults) there.

ALTER TABLE tickets ADD COLUMN assignee VARCHAR;
ALTER TABLE tickets ADD COLUMN affected JSON;
ALTER TABLE tickets ADD COLUMN similar_cases JSON;
ALTER TABLE tickets ADD COLUMN detected_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN resolution VARCHAR;
ALTER TABLE tickets ADD COLUMN cause_code VARCHAR;
-- The whole SLA state (targets, clock segments, deferred escalation) for the engine ...
ALTER TABLE tickets ADD COLUMN sla JSON;
-- ... and its figures as columns for analytics.
ALTER TABLE tickets ADD COLUMN response_target_ms BIGINT;
ALTER TABLE tickets ADD COLUMN resolution_target_ms BIGINT;
ALTER TABLE tickets ADD COLUMN response_due_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN resolution_due_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN response_breached_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN resolution_breached_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN resolution_elapsed_ms BIGINT DEFAULT 0;
ALTER TABLE tickets ADD COLUMN escalation_level INTEGER DEFAULT 0;
ALTER TABLE tickets ADD COLUMN escalated_at TIMESTAMP;
ALTER TABLE tickets ADD COLUMN reopened INTEGER DEFAULT 0;
ALTER TABLE tickets ADD COLUMN close_held VARCHAR;

-- The outbox: written in the transaction that made the event, marked when delivered.
ALTER TABLE notifications ADD COLUMN idempotency_key VARCHAR;
ALTER TABLE notifications ADD COLUMN channel VARCHAR;
ALTER TABLE notifications ADD COLUMN event VARCHAR;
ALTER TABLE notifications ADD COLUMN ticket_id BIGINT;
ALTER TABLE notifications ADD COLUMN next_attempt_at TIMESTAMP;
ALTER TABLE notifications ADD COLUMN failed_at TIMESTAMP;
