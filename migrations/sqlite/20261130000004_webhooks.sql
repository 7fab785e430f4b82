-- Webhooks out. The outbox is filled from what is already durable: the event log, the
-- suppressions and the blocked sends. Each configured webhook reads them after its cursors; what
-- it still has to deliver is a row of webhook_outbox until the receiver answers 2xx (or the
-- event is older than webhook_delivery.max_age). The payload is built at each attempt from the
-- source row, so an erasure that scrubbed the row also scrubs what is sent.
CREATE TABLE webhook_cursors (
    webhook TEXT    NOT NULL,
    source  TEXT    NOT NULL CHECK (source IN ('events', 'suppressions', 'blocked')),
    last_id INTEGER NOT NULL,
    PRIMARY KEY (webhook, source)
);
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook         TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    source          TEXT    NOT NULL CHECK (source IN ('events', 'suppressions', 'blocked')),
    source_id       INTEGER NOT NULL,
    created_at      TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lease_until     TEXT,
    last_error      TEXT,
    delivered_at    TEXT,
    UNIQUE (webhook, source, source_id)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(state, next_attempt_at);
