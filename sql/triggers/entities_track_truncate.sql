CREATE TRIGGER entities_track_truncate
  AFTER TRUNCATE ON entities
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_track_change();
