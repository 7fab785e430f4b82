-- bouncegate store, SQLite. Timestamps are RFC 3339 UTC text with microseconds, so they sort.
-- Scope columns use '' for "any" so that the uniqueness of active suppressions holds.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Raw mails exactly as received. Append-only: only the retention purge may delete.
CREATE TABLE evidence (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at TEXT    NOT NULL,
    sha256      TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    raw         BLOB    NOT NULL,
    mail_from   TEXT,
    rcpt_to     TEXT,
    helo        TEXT,
    peer_ip     TEXT
);
CREATE TRIGGER evidence_is_append_only BEFORE UPDATE ON evidence
BEGIN
    SELECT RAISE(ABORT, 'evidence is append-only');
END;

-- Every bounce, delay, complaint, unsubscribe, auto-reply seen, and every lift, consent, erasure.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    address      TEXT,
    address_hash TEXT,
    company      TEXT    NOT NULL DEFAULT '',
    brand        TEXT    NOT NULL DEFAULT '',
    reason       TEXT,
    class        TEXT,
    status       TEXT,
    reply_code   TEXT,
    diagnostic   TEXT,
    message_id   TEXT,
    verified     INTEGER NOT NULL DEFAULT 0,
    evidence_id  INTEGER REFERENCES evidence(id),
    source       TEXT,
    note         TEXT
);
CREATE INDEX events_by_address ON events(address_hash, occurred_at);

CREATE TABLE consents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    address      TEXT,
    address_hash TEXT    NOT NULL,
    channel      TEXT    NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'postal')),
    company      TEXT    NOT NULL,
    brand        TEXT    NOT NULL DEFAULT '',
    confirmed_at TEXT    NOT NULL,
    recorded_at  TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    proof        BLOB,
    proof_sha256 TEXT    NOT NULL,
    proof_name   TEXT
);
CREATE INDEX consents_by_address ON consents(address_hash);

CREATE TABLE suppressions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    address           TEXT,
    address_hash      TEXT    NOT NULL,
    channel           TEXT    NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'postal')),
    company           TEXT    NOT NULL DEFAULT '',
    brand             TEXT    NOT NULL DEFAULT '',
    reason            TEXT    NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual')),
    source            TEXT    NOT NULL CHECK (source IN ('dsn', 'arf', 'unsubscribe_mail', 'one_click', 'api', 'cli', 'import')),
    note              TEXT,
    created_at        TEXT    NOT NULL,
    expires_at        TEXT,
    evidence_id       INTEGER REFERENCES evidence(id),
    event_id          INTEGER REFERENCES events(id),
    lifted_at         TEXT,
    lifted_by         TEXT,
    lift_note         TEXT,
    lift_consent_id   INTEGER REFERENCES consents(id),
    CHECK (reason <> 'manual' OR (note IS NOT NULL AND note <> ''))
);
-- One active suppression per address, channel, scope and reason: no duplicate rows.
CREATE UNIQUE INDEX suppressions_active
    ON suppressions(address_hash, channel, company, brand, reason) WHERE lifted_at IS NULL;
CREATE INDEX suppressions_by_address ON suppressions(address_hash);

-- Erased addresses: only the keyed hash is left.
CREATE TABLE erasures (
    address_hash TEXT PRIMARY KEY,
    erased_at    TEXT NOT NULL
);
