-- A block recorded on the staff web page has source 'staff' (it had 'api', with created_by naming
-- the staff member).
ALTER TABLE suppressions DROP CONSTRAINT suppressions_source_check;
ALTER TABLE suppressions ADD CONSTRAINT suppressions_source_check
    CHECK (source IN ('dsn', 'arf', 'unsubscribe_mail', 'unverified_mail', 'one_click', 'api', 'cli', 'import', 'staff'));
