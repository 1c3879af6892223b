-- 0006: a node's full reports move out of `nodes` into an append-only table.
-- DuckDB rewrites, at every checkpoint, each column an update touched in a row group: with the
-- 2 KB report JSON in `nodes`, every checkpoint recompressed all 50,000 nodes' reports, and the
-- writer stalled for seconds inside a commit (BENCHMARKS.md). Appended rows cost a checkpoint
-- only their own size. The writer appends a node's report at most every `[store]
-- report_interval` (and when one of its alerts changes state) and deletes every report but the
-- newest of each node about once a minute.
CREATE TABLE node_reports (
    site       VARCHAR NOT NULL,
    node       VARCHAR NOT NULL,
    report_at  TIMESTAMP NOT NULL,
    seq        UBIGINT,
    report     JSON NOT NULL
);

INSERT INTO node_reports
    SELECT site, node, coalesce(last_report_at, updated_at), last_seq, last_report
    FROM nodes WHERE last_report IS NOT NULL;

ALTER TABLE nodes DROP COLUMN last_report;

-- Each node with its newest stored report, as `nodes.last_report` was.
CREATE VIEW v_nodes AS
    SELECT n.*, r.report AS last_report, r.report_at AS last_report_stored_at
    FROM nodes n
    LEFT JOIN (
        SELECT site, node, arg_max(report, report_at) AS report, max(report_at) AS report_at
        FROM node_reports GROUP BY site, node
    ) r USING (site, node);
