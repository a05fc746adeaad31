-- Row-level capture for the incremental strategy; enabled only while a view uses it.
CREATE TRIGGER entities_capture_truncate
  AFTER TRUNCATE ON entities
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();
