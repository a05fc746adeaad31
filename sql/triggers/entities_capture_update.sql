-- Row-level capture for the incremental strategy; enabled only while a view uses it.
CREATE TRIGGER entities_capture_update
  AFTER UPDATE ON entities
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();
