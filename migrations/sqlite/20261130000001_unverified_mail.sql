-- An unsubscribe mail whose sender could not be authenticated is recorded with source
-- 'unverified_mail'. SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE suppressions_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    address           TEXT,
    address_hash      TEXT    NOT NULL,
    channel           TEXT    NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'postal')),
    company           TEXT    NOT NULL DEFAULT '',
    brand             TEXT    NOT NULL DEFAULT '',
    reason            TEXT    NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual')),
    source            TEXT    NOT NULL CHECK (source IN ('dsn', 'arf', 'unsubscribe_mail', 'unverified_mail', 'one_click', 'api', 'cli', 'import')),
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
INSERT INTO suppressions_new SELECT * FROM suppressions;
DROP TABLE suppressions;
ALTER TABLE suppressions_new RENAME TO suppressions;
CREATE UNIQUE INDEX suppressions_active
    ON suppressions(address_hash, channel, company, brand, reason) WHERE lifted_at IS NULL;
CREATE INDEX suppressions_by_address ON suppressions(address_hash);

-- Plain unsubscribe mails held for staff review (past the per-IP limit, sender not
-- authenticated) and what staff decided: one decision per held event.
CREATE TABLE reviews (
    event_id       INTEGER PRIMARY KEY REFERENCES events(id),
    decided_at     TEXT    NOT NULL,
    decided_by     TEXT    NOT NULL,
    decision       TEXT    NOT NULL CHECK (decision IN ('accepted', 'dismissed')),
    note           TEXT    NOT NULL CHECK (note <> ''),
    suppression_id INTEGER REFERENCES suppressions(id)
);
CREATE INDEX events_by_kind_only ON events(kind, id);
