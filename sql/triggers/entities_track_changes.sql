-- Change tracking for staleness, always on: one cheap call per statement, whatever its row count.
CREATE TRIGGER entities_track_changes
  AFTER INSERT OR UPDATE OR DELETE ON entities
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_track_change();
