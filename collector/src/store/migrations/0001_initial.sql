-- 0001: the initial schema: nodes, alert transitions, incidents, problems, tickets, outbox, rejects.

CREATE TABLE nodes (
    site              VARCHAR NOT NULL,
    node              VARCHAR NOT NULL,
    kind              VARCHAR NOT NULL,
    state             VARCHAR NOT NULL,
    agent_version     VARCHAR,
    inventory         JSON,
    labels            JSON,
    parents           JSON,
    via               VARCHAR,
    last_seq          UBIGINT,
    last_ts           TIMESTAMP,
    last_report_at    TIMESTAMP,
    last_report       JSON,
    state_changed_at  TIMESTAMP NOT NULL,
    first_seen        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL,
    PRIMARY KEY (site, node)
);

-- Every alert transition, appended.
CREATE TABLE alerts (
    id           BIGINT PRIMARY KEY,
    alert_key    VARCHAR NOT NULL,
    rule         VARCHAR NOT NULL,
    site         VARCHAR NOT NULL,
    node         VARCHAR NOT NULL,
    labels       JSON,
    state        VARCHAR NOT NULL,
    severity     VARCHAR NOT NULL,
    category     VARCHAR NOT NULL,
    value        DOUBLE,
    summary      VARCHAR NOT NULL,
    detail       VARCHAR NOT NULL,
    runbook      VARCHAR,
    started_at   TIMESTAMP NOT NULL,
    changed_at   TIMESTAMP NOT NULL,
    incident_id  BIGINT
);

CREATE TABLE incidents (
    id           BIGINT PRIMARY KEY,
    state        VARCHAR NOT NULL,
    title        VARCHAR NOT NULL,
    severity     VARCHAR NOT NULL,
    category     VARCHAR NOT NULL,
    priority     VARCHAR NOT NULL,
    site         VARCHAR NOT NULL,
    node         VARCHAR NOT NULL,
    root_alert   VARCHAR NOT NULL,
    root_cause   VARCHAR NOT NULL,
    ticket_id    BIGINT,
    opened_at    TIMESTAMP NOT NULL,
    resolved_at  TIMESTAMP,
    closed_at    TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL
);

CREATE TABLE incident_alerts (
    incident_id  BIGINT NOT NULL,
    alert_key    VARCHAR NOT NULL,
    role         VARCHAR NOT NULL,
    linked_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (incident_id, alert_key)
);

CREATE TABLE problems (
    id           BIGINT PRIMARY KEY,
    state        VARCHAR NOT NULL,
    signature    VARCHAR NOT NULL,
    title        VARCHAR NOT NULL,
    workaround   VARCHAR,
    opened_at    TIMESTAMP NOT NULL,
    resolved_at  TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL
);

CREATE TABLE problem_incidents (
    problem_id   BIGINT NOT NULL,
    incident_id  BIGINT NOT NULL,
    linked_at    TIMESTAMP NOT NULL,
    PRIMARY KEY (problem_id, incident_id)
);

CREATE TABLE tickets (
    id                BIGINT PRIMARY KEY,
    number            VARCHAR NOT NULL,  -- unique: numbered by the engine (a second UNIQUE index would block INSERT OR REPLACE)
    kind              VARCHAR NOT NULL,
    state             VARCHAR NOT NULL,
    priority          VARCHAR NOT NULL,
    impact            VARCHAR NOT NULL,
    urgency           VARCHAR NOT NULL,
    category          VARCHAR NOT NULL,
    assignment_group  VARCHAR NOT NULL,
    summary           VARCHAR NOT NULL,
    description       VARCHAR NOT NULL,
    reporter          JSON,
    environment       JSON,
    incident_id       BIGINT,
    site              VARCHAR,
    node              VARCHAR,
    runbook           VARCHAR,
    opened_at         TIMESTAMP NOT NULL,
    acknowledged_at   TIMESTAMP,
    resolved_at       TIMESTAMP,
    closed_at         TIMESTAMP,
    updated_at        TIMESTAMP NOT NULL
);

-- The full audit log of every ticket, appended.
CREATE TABLE ticket_events (
    id         BIGINT PRIMARY KEY,
    ticket_id  BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    kind       VARCHAR NOT NULL,
    actor      VARCHAR NOT NULL,
    message    VARCHAR NOT NULL,
    data       JSON
);

-- Durable outbox for webhooks, e-mail and MQTT events.
CREATE TABLE notifications (
    id          BIGINT PRIMARY KEY,
    target      VARCHAR NOT NULL,
    kind        VARCHAR NOT NULL,
    payload     JSON NOT NULL,
    state       VARCHAR NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  VARCHAR,
    created_at  TIMESTAMP NOT NULL,
    sent_at     TIMESTAMP
);

CREATE SEQUENCE rejected_payloads_id START 1;

-- Payloads refused at intake, with the reason.
CREATE TABLE rejected_payloads (
    id            BIGINT PRIMARY KEY DEFAULT nextval('rejected_payloads_id'),
    received_at   TIMESTAMP NOT NULL,
    topic         VARCHAR NOT NULL,
    site          VARCHAR,
    node          VARCHAR,
    reason        VARCHAR NOT NULL,
    error         VARCHAR NOT NULL,
    payload_size  BIGINT NOT NULL,
    payload       VARCHAR NOT NULL
);

-- The latest transition of every alert.
CREATE VIEW v_alerts_current AS
SELECT * FROM alerts
QUALIFY row_number() OVER (PARTITION BY alert_key ORDER BY id DESC) = 1;
