-- A tamper-evident evidence log. Each evidence row is sealed by a link in evidence_chain: the
-- SHA-256 over the previous link, the row's id, receipt time, the SHA-256 of its bytes and of its
-- envelope (computed by the gateway). `bouncegate evidence verify` walks the chain. A row leaves
-- only through the purge path, which first writes its tombstone; the link stays, so the chain
-- still verifies. What a database superuser can still do is in the README; verify is how an
-- auditor notices.
CREATE TABLE evidence_chain (
    evidence_id     INTEGER PRIMARY KEY,
    received_at     TEXT    NOT NULL,
    sha256          TEXT    NOT NULL,
    envelope_sha256 TEXT    NOT NULL,
    link            TEXT    NOT NULL
);
CREATE TABLE evidence_tombstones (
    evidence_id INTEGER PRIMARY KEY REFERENCES evidence_chain(evidence_id),
    purged_at   TEXT    NOT NULL,
    reason      TEXT    NOT NULL
);

CREATE TRIGGER evidence_delete_only_when_purged BEFORE DELETE ON evidence
WHEN NOT EXISTS (SELECT 1 FROM evidence_tombstones WHERE evidence_id = OLD.id)
BEGIN
    SELECT RAISE(ABORT, 'evidence is append-only: it leaves only through the purge, which records a tombstone');
END;
-- INSERT OR REPLACE deletes the old row without delete triggers (unless recursive triggers are
-- on): refuse any insert that names an id already used.
CREATE TRIGGER evidence_ids_are_never_reused BEFORE INSERT ON evidence
WHEN NEW.id IS NOT NULL AND (EXISTS (SELECT 1 FROM evidence WHERE id = NEW.id)
                             OR EXISTS (SELECT 1 FROM evidence_chain WHERE evidence_id = NEW.id))
BEGIN
    SELECT RAISE(ABORT, 'evidence ids are never reused');
END;
CREATE TRIGGER evidence_chain_is_append_only_update BEFORE UPDATE ON evidence_chain
BEGIN
    SELECT RAISE(ABORT, 'the evidence chain is append-only');
END;
CREATE TRIGGER evidence_chain_is_append_only_delete BEFORE DELETE ON evidence_chain
BEGIN
    SELECT RAISE(ABORT, 'the evidence chain is append-only');
END;
CREATE TRIGGER evidence_tombstones_are_append_only_update BEFORE UPDATE ON evidence_tombstones
BEGIN
    SELECT RAISE(ABORT, 'evidence tombstones are append-only');
END;
CREATE TRIGGER evidence_tombstones_are_append_only_delete BEFORE DELETE ON evidence_tombstones
BEGIN
    SELECT RAISE(ABORT, 'evidence tombstones are append-only');
END;
