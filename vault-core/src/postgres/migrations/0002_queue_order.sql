-- Queue ids in commit order. A node's queue insert takes the next ids from this row, whose
-- lock it holds until it commits, so a row with a higher id never becomes visible before
-- one with a lower id. The sequencer can then read on from the last id it integrated
-- instead of scanning the queue from its start, where deleted rows wait for vacuum.
-- No node queues while the head is set (one still running an older build would take an id
-- the head is about to give out).
LOCK TABLE audit_queue IN ACCESS EXCLUSIVE MODE;
CREATE TABLE audit_queue_head (
    id   int PRIMARY KEY CHECK (id = 1),
    next bigint NOT NULL
);
INSERT INTO audit_queue_head VALUES (1, GREATEST(
    (SELECT coalesce(max(id), 0) FROM audit_queue),
    (SELECT coalesce(max(queue_id), 0) FROM audit_entries),
    (SELECT last_value FROM audit_queue_id_seq)) + 1);
ALTER TABLE audit_queue ALTER COLUMN id DROP DEFAULT;
DROP SEQUENCE audit_queue_id_seq;
-- Queued rows live for milliseconds: vacuum them as soon as a few thousand are dead.
ALTER TABLE audit_queue SET (autovacuum_vacuum_scale_factor = 0,
                             autovacuum_vacuum_threshold = 5000,
                             autovacuum_vacuum_cost_delay = 0);
