-- An unsubscribe mail whose sender could not be authenticated is recorded with source
-- 'unverified_mail'.
ALTER TABLE suppressions DROP CONSTRAINT suppressions_source_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_source_check
    CHECK (source IN ('dsn', 'arf', 'unsubscribe_mail', 'unverified_mail', 'one_click', 'api', 'cli', 'import'));

-- Plain unsubscribe mails held for staff review (past the per-IP limit, sender not
-- authenticated) and what staff decided: one decision per held event.
CREATE TABLE reviews (
    event_id       BIGINT  PRIMARY KEY REFERENCES events(id),
    decided_at     TEXT    NOT NULL,
    decided_by     TEXT    NOT NULL,
    decision       TEXT    NOT NULL CHECK (decision IN ('accepted', 'dismissed')),
    note           TEXT    NOT NULL CHECK (note <> ''),
    suppression_id BIGINT  REFERENCES suppressions(id)
);
CREATE INDEX events_by_kind_only ON events(kind, id);
