-- The relay's durable queue. A relayed message's bytes are kept once (queue_messages.raw) until
-- every recipient is delivered, failed or dropped; each recipient is an item of its own, with its
-- send record and signed return path. A worker holds an item by a lease: an expired lease puts
-- it back, it is never deleted.
CREATE TABLE queue_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT    NOT NULL,
    client      TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    raw         BLOB
);
CREATE TABLE queue (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    message           INTEGER NOT NULL REFERENCES queue_messages(id),
    recipient         TEXT    NOT NULL,
    recipient_hash    TEXT    NOT NULL,
    company           TEXT    NOT NULL,
    brand             TEXT    NOT NULL DEFAULT '',
    class             TEXT    NOT NULL CHECK (class IN ('promotional', 'service')),
    send_id           INTEGER NOT NULL REFERENCES sends(id),
    return_path       TEXT    NOT NULL,
    unsubscribe_token TEXT,
    state             TEXT    NOT NULL CHECK (state IN ('queued', 'held', 'delivered', 'failed', 'dropped')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT    NOT NULL,
    lease_until       TEXT,
    leased_by         TEXT,
    last_error        TEXT,
    created_at        TEXT    NOT NULL,
    updated_at        TEXT    NOT NULL
);
CREATE INDEX queue_due ON queue(state, next_attempt_at);
CREATE INDEX queue_by_message ON queue(message);

-- Every mail the relay did not send to a recipient because a suppression blocked it.
CREATE TABLE blocked (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    blocked_at     TEXT    NOT NULL,
    recipient_hash TEXT    NOT NULL,
    company        TEXT    NOT NULL,
    brand          TEXT    NOT NULL DEFAULT '',
    class          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    message_id     TEXT,
    client         TEXT    NOT NULL,
    stage          TEXT    NOT NULL CHECK (stage IN ('rcpt', 'data', 'queue'))
);
CREATE INDEX blocked_by_time ON blocked(blocked_at);
