-- The retention purge finds old rows by time and follows the links between evidence, events,
-- suppressions, sends and queue items; without these it would scan whole tables per batch.
CREATE INDEX events_by_time ON events(occurred_at);
CREATE INDEX events_by_evidence ON events(evidence_id);
CREATE INDEX suppressions_by_event ON suppressions(event_id);
CREATE INDEX suppressions_by_evidence ON suppressions(evidence_id);
CREATE INDEX evidence_by_time ON evidence(received_at);
CREATE INDEX sends_by_time ON sends(sent_at);
CREATE INDEX queue_by_send ON queue(send_id);
