-- Who recorded a suppression by hand (staff on the web page, an API token, a CLI user); NULL for
-- what mail and clicks recorded (the evidence says who).
ALTER TABLE suppressions ADD COLUMN created_by TEXT;
