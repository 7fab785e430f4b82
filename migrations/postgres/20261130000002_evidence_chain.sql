-- A tamper-evident evidence log. Each evidence row is sealed by a link in evidence_chain: the
-- SHA-256 over the previous link, the row's id, receipt time, the SHA-256 of its bytes and of its
-- envelope (computed by the gateway). `bouncegate evidence verify` walks the chain. A row leaves
-- only through the purge path, which first writes its tombstone; the link stays, so the chain
-- still verifies. What a database superuser can still do is in the README; verify is how an
-- auditor notices.
CREATE TABLE evidence_chain (
    evidence_id     BIGINT PRIMARY KEY,
    received_at     TEXT   NOT NULL,
    sha256          TEXT   NOT NULL,
    envelope_sha256 TEXT   NOT NULL,
    link            TEXT   NOT NULL
);
CREATE TABLE evidence_tombstones (
    evidence_id BIGINT PRIMARY KEY REFERENCES evidence_chain(evidence_id),
    purged_at   TEXT   NOT NULL,
    reason      TEXT   NOT NULL
);

CREATE FUNCTION evidence_delete_only_when_purged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM evidence_tombstones WHERE evidence_id = OLD.id) THEN
        RAISE EXCEPTION 'evidence is append-only: it leaves only through the purge, which records a tombstone';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER evidence_delete_only_when_purged BEFORE DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_delete_only_when_purged();

CREATE FUNCTION evidence_ids_are_never_reused() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM evidence_chain WHERE evidence_id = NEW.id) THEN
        RAISE EXCEPTION 'evidence ids are never reused';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER evidence_ids_are_never_reused BEFORE INSERT ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_ids_are_never_reused();

CREATE FUNCTION evidence_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;
CREATE TRIGGER evidence_chain_is_append_only BEFORE UPDATE OR DELETE ON evidence_chain
    FOR EACH ROW EXECUTE FUNCTION evidence_log_is_append_only();
CREATE TRIGGER evidence_tombstones_are_append_only BEFORE UPDATE OR DELETE ON evidence_tombstones
    FOR EACH ROW EXECUTE FUNCTION evidence_log_is_append_only();
-- TRUNCATE (also TRUNCATE … CASCADE from a referencing table's side) fires no row triggers.
CREATE TRIGGER evidence_no_truncate BEFORE TRUNCATE ON evidence
    FOR EACH STATEMENT EXECUTE FUNCTION evidence_log_is_append_only();
CREATE TRIGGER evidence_chain_no_truncate BEFORE TRUNCATE ON evidence_chain
    FOR EACH STATEMENT EXECUTE FUNCTION evidence_log_is_append_only();
CREATE TRIGGER evidence_tombstones_no_truncate BEFORE TRUNCATE ON evidence_tombstones
    FOR EACH STATEMENT EXECUTE FUNCTION evidence_log_is_append_only();
