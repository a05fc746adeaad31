-- Up Migration
-- Validates the path limits 0006_entity_limits.sql added NOT VALID. A transaction of its own:
-- VALIDATE CONSTRAINT scans entities under SHARE UPDATE EXCLUSIVE, which neither readers nor
-- writers wait for (in 0006's transaction the scan would have held its ACCESS EXCLUSIVE lock).
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

-- Rows written before 0006 committed and beyond the limits: say which and what to do, rather
-- than PostgreSQL's "violated by some row".
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

ALTER TABLE entities VALIDATE CONSTRAINT entities_path_depth_limit;
ALTER TABLE entities VALIDATE CONSTRAINT entities_path_length_limit;
ALTER TABLE entities VALIDATE CONSTRAINT entities_path_label_length_limit;

-- Down Migration
-- A validated constraint cannot be made NOT VALID again; 0006's down migration drops them.
SELECT 1;
