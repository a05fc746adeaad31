-- Keeps entities.updated_at true on every update, whoever writes.
CREATE OR REPLACE FUNCTION entities_touch_updated_at() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
