-- What was sent to whom, by which company and brand: the record a VERP or unsubscribe token names,
-- and how a bounce that quotes the original Message-ID is attributed.
CREATE TABLE sends (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    address      TEXT,
    address_hash TEXT    NOT NULL,
    company      TEXT    NOT NULL,
    brand        TEXT    NOT NULL DEFAULT '',
    class        TEXT    NOT NULL DEFAULT 'promotional',
    message_id   TEXT    NOT NULL DEFAULT '',
    sent_at      TEXT    NOT NULL
);
CREATE INDEX sends_by_message ON sends(message_id);
CREATE INDEX sends_by_address ON sends(address_hash);

-- Counting soft bounces per address and kind within a window.
CREATE INDEX events_by_kind ON events(address_hash, kind, occurred_at);
