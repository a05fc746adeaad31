CREATE TRIGGER entities_touch_updated_at
  BEFORE UPDATE ON entities
  FOR EACH ROW EXECUTE FUNCTION entities_touch_updated_at();
