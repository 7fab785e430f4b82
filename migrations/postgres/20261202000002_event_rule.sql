-- The bounce rule that decided an event's reason (`builtin:rule.17`, `builtin:status.decisive.X.1.2`,
-- joined by `+` with the rules that changed it), so an operator who disagrees sees why.
ALTER TABLE events ADD COLUMN rule TEXT;
