-- Up Migration
-- Limits on the shape of a path (docs/semantics.md, "Limits"): at most 100 levels, at most 512
-- bytes of text, labels of at most 64 characters. A GiST key of an ltree holds whole paths (an
-- inner key two of them), so one very deep or long path makes every page split of the path
-- indexes degenerate: a chain of 254 short levels ran 80 s in one INSERT, ignoring
-- statement_timeout, grew entities_depth_path_gist to 1.8 GB and ended in "stack depth limit
-- exceeded". Well inside these limits the indexes stay small and a row costs well under a
-- millisecond; beyond them a write is rejected before it reaches an index.
--
-- Added NOT VALID here (new writes are checked from this commit on; the lock is held only for
-- the catalog change) and validated by 0007_entity_limits_validate.sql in a transaction of its
-- own, whose scan takes a lock that neither readers nor writers wait for.
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

-- Existing rows beyond the limits: fail with what to do, before changing anything.
DO $do$
DECLARE
  v_count bigint;
  v_example record;
BEGIN
  SELECT count(*) INTO v_count FROM entities
   WHERE nlevel(path) > 100 OR octet_length(path::text) > 512 OR path::text ~ '[^.]{65}';
  IF v_count > 0 THEN
    SELECT id, nlevel(path) AS depth, octet_length(path::text) AS bytes INTO v_example
      FROM entities
     WHERE nlevel(path) > 100 OR octet_length(path::text) > 512 OR path::text ~ '[^.]{65}'
     ORDER BY nlevel(path) DESC, id LIMIT 1;
    RAISE EXCEPTION '% entities exceed the path limits (at most 100 levels, 512 bytes, labels of 64 characters), e.g. id % (% levels, % bytes): shorten or move them, then migrate again',
        v_count, v_example.id, v_example.depth, v_example.bytes
      USING ERRCODE = 'check_violation',
            HINT = 'shorten or move those paths (one UPDATE moves a whole subtree), then run `hierarchy-db migrate up` again';
  END IF;
END
$do$;

-- ACCESS EXCLUSIVE for a moment: tried with a short lock_timeout and retried, so a long
-- transaction on entities delays the migration instead of queueing every writer behind it.
DO $do$
DECLARE
  v_attempts integer := 0;
  v_lock_timeout text := current_setting('lock_timeout');
BEGIN
  LOOP
    BEGIN
      PERFORM set_config('lock_timeout', '100ms', true);
      ALTER TABLE entities
        ADD CONSTRAINT entities_path_depth_limit CHECK (nlevel(path) <= 100) NOT VALID,
        ADD CONSTRAINT entities_path_length_limit CHECK (octet_length(path::text) <= 512) NOT VALID,
        ADD CONSTRAINT entities_path_label_length_limit CHECK (path::text !~ '[^.]{65}') NOT VALID;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      v_attempts := v_attempts + 1;
      IF v_attempts >= 150 THEN
        RAISE EXCEPTION 'could not lock entities within 30 s to add the path limits: a long transaction is using it'
          USING ERRCODE = 'lock_not_available',
                HINT = 'find it in pg_stat_activity, end it, and run `hierarchy-db migrate up` again';
      END IF;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);
END
$do$;

COMMENT ON CONSTRAINT entities_path_depth_limit ON entities IS
  'A path has at most 100 levels (docs/semantics.md, "Limits").';
COMMENT ON CONSTRAINT entities_path_length_limit ON entities IS
  'A path is at most 512 bytes of text (docs/semantics.md, "Limits").';
COMMENT ON CONSTRAINT entities_path_label_length_limit ON entities IS
  'A label is at most 64 characters (docs/semantics.md, "Limits").';

-- Down Migration
ALTER TABLE entities
  DROP CONSTRAINT IF EXISTS entities_path_depth_limit,
  DROP CONSTRAINT IF EXISTS entities_path_length_limit,
  DROP CONSTRAINT IF EXISTS entities_path_label_length_limit;
