-- Row-level capture for the incremental strategy; enabled only while a view uses it
-- (PostgreSQL allows a transition table only on a trigger with a single event: one per event).
CREATE TRIGGER entities_capture_insert
  AFTER INSERT ON entities
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();
