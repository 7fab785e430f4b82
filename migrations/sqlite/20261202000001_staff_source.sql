-- A block recorded on the staff web page has source 'staff' (it had 'api', with created_by naming
-- the staff member). SQLite cannot change a CHECK constraint in place: the table is rebuilt. The
-- reviews that point at suppressions are held aside meanwhile, so that dropping the old table
-- orphans no row (foreign keys stay on; the migration runs in one transaction).
CREATE TEMP TABLE reviews_held AS SELECT * FROM reviews;
DELETE FROM reviews;
-- Ids are never reused: the sequence is carried over even where the highest rows were purged.
CREATE TEMP TABLE sequence_held AS SELECT seq FROM sqlite_sequence WHERE name = 'suppressions';

CREATE TABLE suppressions_new (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    address           TEXT,
    address_hash      TEXT    NOT NULL,
    channel           TEXT    NOT NULL DEFAULT 'email' CHECK (channel IN ('email', 'postal')),
    company           TEXT    NOT NULL DEFAULT '',
    brand             TEXT    NOT NULL DEFAULT '',
    reason            TEXT    NOT NULL CHECK (reason IN ('hard_bounce', 'soft_bounce', 'complaint', 'unsubscribe', 'manual')),
    source            TEXT    NOT NULL CHECK (source IN ('dsn', 'arf', 'unsubscribe_mail', 'unverified_mail', 'one_click', 'api', 'cli', 'import', 'staff')),
    note              TEXT,
    created_at        TEXT    NOT NULL,
    expires_at        TEXT,
    evidence_id       INTEGER REFERENCES evidence(id),
    event_id          INTEGER REFERENCES events(id),
    lifted_at         TEXT,
    lifted_by         TEXT,
    lift_note         TEXT,
    lift_consent_id   INTEGER REFERENCES consents(id),
    created_by        TEXT,
    CHECK (reason <> 'manual' OR (note IS NOT NULL AND note <> ''))
);
INSERT INTO suppressions_new SELECT * FROM suppressions;
DROP TABLE suppressions;
ALTER TABLE suppressions_new RENAME TO suppressions;
CREATE UNIQUE INDEX suppressions_active
    ON suppressions(address_hash, channel, company, brand, reason) WHERE lifted_at IS NULL;
CREATE INDEX suppressions_by_address ON suppressions(address_hash);
CREATE INDEX suppressions_by_event ON suppressions(event_id);
CREATE INDEX suppressions_by_evidence ON suppressions(evidence_id);
DELETE FROM sqlite_sequence WHERE name = 'suppressions';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'suppressions', max(seq)
    FROM (SELECT seq FROM sequence_held UNION ALL SELECT max(id) AS seq FROM suppressions)
    HAVING max(seq) IS NOT NULL;
DROP TABLE sequence_held;

INSERT INTO reviews SELECT * FROM reviews_held;
DROP TABLE reviews_held;
