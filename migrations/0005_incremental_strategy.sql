-- Up Migration
-- The incremental view strategy and one home for the SQL (sql/): change capture without NOTIFY,
-- the definition views both strategies read, the online rebuild primitive, the strategy switch,
-- a refresh function that reports reason, method and rows_changed, and grants that work for the
-- documented roles. Self-contained: a copy of each object's definition as of this release (the
-- current ones live in sql/; test/verify checks a freshly migrated database against them).

-- Every function below pins search_path to the schema it is created in (SET search_path FROM
-- CURRENT), so the migrating session's path is set to exactly that schema first.
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

ALTER TABLE hierarchy_view_state
  ADD COLUMN strategy text NOT NULL DEFAULT 'materialized'
    CONSTRAINT hierarchy_view_state_strategy_check CHECK (strategy IN ('materialized', 'incremental')),
  ADD COLUMN row_count bigint,
  ADD COLUMN clean_skips bigint NOT NULL DEFAULT 0,
  ADD COLUMN last_checked_at timestamptz;

ALTER TABLE mv_refresh_audit
  ADD COLUMN reason text,
  ADD COLUMN method text
    CONSTRAINT mv_refresh_audit_method_check
    CHECK (method IN ('concurrent', 'plain', 'incremental', 'full', 'rebuild')),
  ADD COLUMN rows_changed bigint;

-- Captured row changes for the incremental strategy: one row per changed entity row, written by
-- one INSERT per statement. No index: writers pay the least, and a refresh reads all of it.
CREATE TABLE hierarchy_change_rows (
  xid           xid8 NOT NULL,
  entity_id     bigint,
  old_path      ltree,
  new_path      ltree,
  old_active    boolean,
  new_active    boolean,
  name_changed  boolean NOT NULL DEFAULT false,
  score_changed boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE hierarchy_change_rows IS
  'Row changes of entities not yet applied by every incremental view (hierarchy-db); an entity_id of NULL records a TRUNCATE.';

-- Their return types change: CREATE OR REPLACE cannot do that.
DROP FUNCTION refresh_hierarchy_views(boolean, text[], text);
DROP FUNCTION hierarchy_view_status();

-- Change tracking for staleness: one row per writing transaction in hierarchy_changes, keyed by
-- the writer's own xid, so concurrent writers never wait on each other or on a shared row.
-- Writers send no NOTIFY: PostgreSQL commits every notifying transaction one at a time on a
-- database-wide lock held across the commit flush. The daemon polls hierarchy_changes_probe().
-- SECURITY DEFINER: any role allowed to write entities is tracked without privileges on the log.
CREATE OR REPLACE FUNCTION hierarchy_track_change() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  -- The first tracked statement of a transaction inserts its row; later ones find it.
  INSERT INTO hierarchy_changes (xid, changed_at)
  VALUES (pg_current_xact_id(), clock_timestamp())
  ON CONFLICT (xid) DO NOTHING;
  RETURN NULL;
END
$fn$;

-- Row-level change capture for the incremental strategy (docs/semantics.md, "Strategies"): one
-- INSERT per statement, from the statement's transition tables, recording per changed row what
-- the incremental apply needs. Its triggers (entities_capture_*) are enabled only while some
-- view uses the incremental strategy (hierarchy_set_row_capture), so writers of a database with
-- only materialized views pay nothing for it. A TRUNCATE is recorded as one row without an
-- entity id: the next refresh of an incremental view recomputes it from its definition. So is
-- every statement of a transaction that set hierarchy_db.bulk_load (seed, large imports): one
-- row instead of a million, and the recompute is cheaper than applying a million changes.
CREATE OR REPLACE FUNCTION hierarchy_capture_rows() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
BEGIN
  IF TG_OP = 'TRUNCATE' OR current_setting('hierarchy_db.bulk_load', true) = 'on' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id) VALUES (pg_current_xact_id(), NULL);
  ELSIF TG_OP = 'INSERT' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id, new_path, new_active)
    SELECT pg_current_xact_id(), n.id, n.path, n.is_active FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    -- A FULL JOIN: an update that changes an id reads as a delete of the old id and an insert
    -- of the new one. Rows whose hierarchy columns did not change are not recorded.
    INSERT INTO hierarchy_change_rows (xid, entity_id, old_path, new_path, old_active, new_active,
                                       name_changed, score_changed)
    SELECT pg_current_xact_id(), COALESCE(n.id, o.id), o.path, n.path, o.is_active, n.is_active,
           o.name IS DISTINCT FROM n.name, o.confidence_score IS DISTINCT FROM n.confidence_score
      FROM old_rows o FULL JOIN new_rows n ON n.id = o.id
     WHERE o.id IS NULL OR n.id IS NULL
        OR o.path IS DISTINCT FROM n.path OR o.is_active IS DISTINCT FROM n.is_active
        OR o.name IS DISTINCT FROM n.name OR o.confidence_score IS DISTINCT FROM n.confidence_score;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO hierarchy_change_rows (xid, entity_id, old_path, old_active)
    SELECT pg_current_xact_id(), o.id, o.path, o.is_active FROM old_rows o;
  END IF;
  RETURN NULL;
END
$fn$;

-- Enables or disables row-level change capture (the entities_capture_* triggers). ALTER TABLE
-- ... ENABLE TRIGGER waits for every transaction that has written entities to finish, and every
-- later write sees the new state (trigger state is catalog data, read whatever the writer's
-- isolation level): so once this commits, every write not yet committed is captured.
-- Run it in a short transaction of its own (hierarchy_set_view_strategy does): it holds a lock
-- that blocks writers until commit. Disabling it forgets the captured rows.
CREATE OR REPLACE FUNCTION hierarchy_set_row_capture(p_enabled boolean) RETURNS void
  LANGUAGE plpgsql
  SET search_path FROM CURRENT
AS $fn$
DECLARE
  v_action text := CASE WHEN p_enabled THEN 'ENABLE' ELSE 'DISABLE' END;
BEGIN
  EXECUTE format('ALTER TABLE entities %1$s TRIGGER entities_capture_insert, '
                 '%1$s TRIGGER entities_capture_update, %1$s TRIGGER entities_capture_delete, '
                 '%1$s TRIGGER entities_capture_truncate', v_action);
  IF NOT p_enabled THEN
    DELETE FROM hierarchy_change_rows;
  END IF;
END
$fn$;

-- Changes committed but not reflected in a view: transactions not visible in the snapshot of
-- its last successful refresh. Every xid below the snapshot's xmin is visible, so only the tail
-- is read, through the primary key. The count stops at 10 001 (a view that keeps failing must
-- not make every status call and metrics scrape read the whole log); the oldest change is the
-- oldest among them, in xid order.
CREATE OR REPLACE FUNCTION hierarchy_pending_changes(
    p_view text, OUT pending_changes bigint, OUT oldest_change_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT count(*), min(p.changed_at)
    FROM (SELECT c.changed_at
            FROM hierarchy_view_state s
            JOIN hierarchy_changes c
              ON s.snapshot IS NULL
              OR (c.xid >= pg_snapshot_xmin(s.snapshot)
                  AND NOT pg_visible_in_snapshot(c.xid, s.snapshot))
           WHERE s.view_name = p_view
           ORDER BY c.xid
           LIMIT 10001) p
$fn$;

-- Per view: populated, staleness (data age), pending changes, its strategy and relation kind,
-- and clean skips (refresh checks that found nothing to do; counted here, not audited).
CREATE OR REPLACE FUNCTION hierarchy_view_status()
  RETURNS TABLE (view_name text, populated boolean, staleness_ms bigint, pending_changes bigint,
                 oldest_change_at timestamptz, data_as_of timestamptz, last_refreshed_at timestamptz,
                 strategy text, relation_kind text, row_count bigint, clean_skips bigint,
                 last_checked_at timestamptz)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT v.name,
         COALESCE(c.relispopulated, false),
         CASE WHEN p.oldest_change_at IS NULL THEN 0
              ELSE GREATEST(0, floor(extract(epoch FROM clock_timestamp() - p.oldest_change_at) * 1000))::bigint
         END,
         p.pending_changes,
         p.oldest_change_at,
         s.data_as_of,
         s.last_refreshed_at,
         s.strategy,
         CASE c.relkind WHEN 'm' THEN 'materialized view' WHEN 'r' THEN 'table'
                        WHEN 'v' THEN 'view' ELSE c.relkind::text END,
         s.row_count,
         s.clean_skips,
         s.last_checked_at
    FROM unnest(ARRAY['mv_entity_ancestors', 'mv_descendant_counts']) WITH ORDINALITY AS v(name, ord)
    LEFT JOIN pg_class c ON c.oid = to_regclass(v.name)
    LEFT JOIN hierarchy_view_state s ON s.view_name = v.name
   CROSS JOIN LATERAL hierarchy_pending_changes(v.name) p
   ORDER BY v.ord
$fn$;

-- The daemon's change probe, polled every few hundred milliseconds: the newest logged
-- transaction and whether some view has a change it does not reflect yet. Both read the primary
-- key backwards from the newest entry, and the second stops at the first pending one: each
-- refresh prunes the transactions every view reflects, so what is left is pending (newest
-- first), and the read is bounded at 1 000 entries whatever the log's size.
CREATE OR REPLACE FUNCTION hierarchy_changes_probe(OUT last_change text, OUT pending boolean)
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
  SELECT (SELECT max(c.xid) FROM hierarchy_changes c)::text,
         EXISTS (SELECT 1
                   FROM (SELECT c.xid FROM hierarchy_changes c ORDER BY c.xid DESC LIMIT 1000) x
                   JOIN hierarchy_view_state s
                     ON s.snapshot IS NULL OR NOT pg_visible_in_snapshot(x.xid, s.snapshot))
$fn$;

-- Row-level capture for the incremental strategy; enabled only while a view uses it
-- (PostgreSQL allows a transition table only on a trigger with a single event: one per event).
CREATE TRIGGER entities_capture_insert
  AFTER INSERT ON entities
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();

-- Row-level capture for the incremental strategy; enabled only while a view uses it.
CREATE TRIGGER entities_capture_update
  AFTER UPDATE ON entities
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();

-- Row-level capture for the incremental strategy; enabled only while a view uses it.
CREATE TRIGGER entities_capture_delete
  AFTER DELETE ON entities
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();

-- Row-level capture for the incremental strategy; enabled only while a view uses it.
CREATE TRIGGER entities_capture_truncate
  AFTER TRUNCATE ON entities
  FOR EACH STATEMENT EXECUTE FUNCTION hierarchy_capture_rows();

-- Capture starts disabled: every view is materialized until `views set-strategy incremental`.
ALTER TABLE entities DISABLE TRIGGER entities_capture_insert, DISABLE TRIGGER entities_capture_update,
  DISABLE TRIGGER entities_capture_delete, DISABLE TRIGGER entities_capture_truncate;

-- The definition of mv_entity_ancestors: one row per active entity with every proper ancestor,
-- root first, parent last (ids and names). Breadcrumbs are structural: inactive ancestors appear.
-- Walks down from the roots one level per iteration (one parent_path index probe per entity),
-- carrying the breadcrumb arrays; inactive entities are walked through and filtered at the end.
-- Rows come in entity_id order: REFRESH ... CONCURRENTLY sorts the new rows on their whole-row
-- image (entity_id first) to check for duplicates, and presorted input makes that sort linear.
-- Both strategies read it (docs/semantics.md): the materialized view selects from it, and the
-- incremental table is built, reconciled and checked (`verify --data`) against it.
CREATE OR REPLACE VIEW hierarchy_ancestors_definition AS
    WITH RECURSIVE chain AS (
      SELECT e.id, e.name, e.path, e.path_depth, e.confidence_score, e.is_active,
             '{}'::bigint[] AS ancestor_ids,
             '{}'::text[] AS ancestors
        FROM entities e
       WHERE e.parent_path IS NULL
      UNION ALL
      SELECT c.id, c.name, c.path, c.path_depth, c.confidence_score, c.is_active,
             p.ancestor_ids || p.id,
             p.ancestors || p.name
        FROM chain p
        JOIN entities c ON c.parent_path = p.path
    )
    SELECT id AS entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors
      FROM chain
     WHERE is_active
     ORDER BY id;

-- The definition of mv_descendant_counts: one row per active entity with the number of active
-- entities strictly below it (leaves have 0). An active entity d is strictly below e exactly
-- when d's parent is e or below e, so each parent's count of active children is added to the
-- parent itself and to each of its prefixes. ltree has no hash opclass before PostgreSQL 17, so
-- the large grouping and join use text keys (ltree2text), which hash on every version.
-- Rows come in entity_id order (see hierarchy_ancestors_definition.sql for why).
CREATE OR REPLACE VIEW hierarchy_descendant_counts_definition AS
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           COALESCE(below.descendant_count, 0)::bigint AS descendant_count
      FROM entities e
      LEFT JOIN (
        SELECT ltree2text(subpath(k.parent_path, 0, level)) AS key,
               sum(k.active_children) AS descendant_count
          FROM (SELECT parent_path, count(*) AS active_children
                  FROM entities
                 WHERE is_active AND parent_path IS NOT NULL
                 GROUP BY parent_path) k
         CROSS JOIN LATERAL generate_series(1, nlevel(k.parent_path)) AS level
         GROUP BY 1
      ) below ON below.key = ltree2text(e.path)
     WHERE e.is_active
     ORDER BY e.id;

-- Incremental apply for mv_entity_ancestors under the incremental strategy: applies the captured
-- row changes committed after p_since (the snapshot the table reflects) and visible in this
-- call's first statement, whose snapshot is returned (and becomes the table's).
--
-- Exact in READ COMMITTED too, where each statement sees a newer snapshot: the batch is fixed by
-- the first statement's snapshot, and rows are recomputed from the current state of entities,
-- never replayed from the log's images. A change committed after that snapshot may already show
-- in a recomputed row; it stays pending and the next refresh recomputes its rows again
-- (idempotent), so nothing is lost or counted twice.
--
-- Affected rows: every changed entity, plus the current descendants of each changed entity whose
-- name or path changed or that was inserted (their breadcrumbs hold its id and name; a path
-- left by one entity and taken by another changes the breadcrumbs below it). (De)activations
-- and score changes touch only the entity's own row: breadcrumbs are structural.
-- A TRUNCATE in the batch (an entity id of NULL) returns needs_full without changing anything:
-- the caller recomputes from the definition (hierarchy_reconcile_view).
--
-- The id sets are passed as arrays to statements planned with their values (EXECUTE ... USING):
-- the change log has no statistics worth the name, and a plan that guessed hundreds of thousands
-- of changed rows would scan the whole hierarchy for a one-row edit.
CREATE OR REPLACE FUNCTION hierarchy_apply_ancestors(
    p_since pg_snapshot,
    OUT applied_snapshot pg_snapshot, OUT needs_full boolean, OUT rows_changed bigint,
    OUT rows_inserted bigint, OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
  -- Per-row index work over a few rows: JIT compiling it would cost more than running it (its
  -- generate_series and lateral estimates look large to the planner).
  SET jit = off
AS $fn$
DECLARE
  v_changed    bigint[];
  v_reparented bigint[];
  v_affected   bigint[];
BEGIN
  SELECT pg_current_snapshot(), COALESCE(bool_or(r.entity_id IS NULL), false),
         COALESCE(array_agg(DISTINCT r.entity_id) FILTER (WHERE r.entity_id IS NOT NULL), '{}'),
         COALESCE(array_agg(DISTINCT r.entity_id)
                    FILTER (WHERE r.entity_id IS NOT NULL
                              AND (r.name_changed OR r.old_path IS DISTINCT FROM r.new_path)), '{}')
    INTO applied_snapshot, needs_full, v_changed, v_reparented
    FROM hierarchy_change_rows r
   WHERE pg_visible_in_snapshot(r.xid, pg_current_snapshot())
     AND NOT pg_visible_in_snapshot(r.xid, p_since);
  rows_changed := 0; rows_inserted := 0; rows_deleted := 0; changed_ids := '{}';
  IF needs_full OR cardinality(v_changed) = 0 THEN
    RETURN;
  END IF;

  EXECUTE $q$
    SELECT array_agg(DISTINCT x.id) FROM (
      SELECT unnest($1) AS id
      UNION ALL
      SELECT d.id FROM entities r JOIN entities d ON d.path <@ r.path AND d.path <> r.path
       WHERE r.id = ANY ($2)
         -- Below a reparented parent, its own expansion already covers every descendant.
         AND NOT EXISTS (SELECT 1 FROM entities q WHERE q.path = r.parent_path AND q.id = ANY ($2))
      ) x$q$
    INTO v_affected USING v_changed, v_reparented;

  EXECUTE $q$
    WITH entity AS MATERIALIZED (
      SELECT a.id, e.id IS NOT NULL AS keep, e.name, e.path, e.path_depth, e.confidence_score
        FROM unnest($1) AS a(id)
        LEFT JOIN entities e ON e.id = a.id AND e.is_active
    ),
    -- One row per (entity, ancestor level). The entities below a renamed or moved node share
    -- its ancestors and each other: each distinct ancestor path is looked up once, and the
    -- breadcrumbs are assembled by a hash join on it, instead of one lookup per entity and level
    -- (tens of thousands of index probes for a subtree of 10 000).
    level AS MATERIALIZED (
      SELECT x.id, l.level, ltree2text(subpath(x.path, 0, l.level)) AS key
        FROM entity x CROSS JOIN LATERAL generate_series(1, x.path_depth - 1) AS l(level)
       WHERE x.keep
    ),
    ancestor AS MATERIALIZED (
      SELECT p.id, p.name, k.key
        FROM (SELECT DISTINCT v.key FROM level v) k
        CROSS JOIN LATERAL (SELECT e.id, e.name FROM entities e WHERE e.path = text2ltree(k.key)) p
    ),
    crumbs AS MATERIALIZED (
      SELECT v.id, array_agg(p.id ORDER BY v.level) AS ids, array_agg(p.name ORDER BY v.level) AS names
        FROM level v JOIN ancestor p ON p.key = v.key
       GROUP BY v.id
    ),
    target AS MATERIALIZED (
      SELECT x.id, x.keep, x.name, x.path, x.path_depth, x.confidence_score,
             COALESCE(b.ids, '{}'::bigint[]) AS ancestor_ids,
             COALESCE(b.names, '{}'::text[]) AS ancestors
        FROM entity x
        LEFT JOIN crumbs b ON b.id = x.id
    ),
    -- By the unique index on entity_id: a join here would read the whole table.
    deleted AS (
      DELETE FROM mv_entity_ancestors t
       WHERE t.entity_id = ANY (ARRAY(SELECT x.id FROM target x WHERE NOT x.keep))
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO mv_entity_ancestors AS t
             (entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors)
      SELECT x.id, x.name, x.path, x.path_depth, x.confidence_score, x.ancestor_ids, x.ancestors
        FROM target x WHERE x.keep
      ON CONFLICT (entity_id) DO UPDATE
         SET name = EXCLUDED.name, path = EXCLUDED.path, path_depth = EXCLUDED.path_depth,
             confidence_score = EXCLUDED.confidence_score, ancestor_ids = EXCLUDED.ancestor_ids,
             ancestors = EXCLUDED.ancestors
       WHERE (t.name, t.path, t.path_depth, t.confidence_score, t.ancestor_ids, t.ancestors)
             IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.path, EXCLUDED.path_depth,
                               EXCLUDED.confidence_score, EXCLUDED.ancestor_ids, EXCLUDED.ancestors)
      RETURNING t.entity_id, (t.xmax = 0) AS inserted
    ),
    changed AS (
      SELECT entity_id, false AS inserted, true AS deleted FROM deleted
      UNION ALL
      SELECT entity_id, inserted, false FROM upserted
    )
    SELECT (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT COALESCE(array_agg(c.entity_id), '{}') FROM (SELECT entity_id FROM changed LIMIT 1001) c)$q$
    INTO rows_changed, rows_inserted, rows_deleted, changed_ids USING v_affected;
END
$fn$;

-- Incremental apply for mv_descendant_counts under the incremental strategy: applies the captured
-- row changes committed after p_since (the snapshot the table reflects) and visible in this
-- call's first statement, whose snapshot is returned (see hierarchy_apply_ancestors.sql for why
-- that is exact in READ COMMITTED, and why the id sets are passed as arrays).
--
-- Counts change by deltas, never by recounting a subtree. Let C be the changed entities. The
-- table holds exactly the entities active at p_since, with their paths then; entities holds the
-- state now. For any path P, count_now(P) = count_then(P) + delta(P), where delta(P) adds 1 for
-- each entity of C active now strictly below P and subtracts 1 for each entity of C in the table
-- (active then) strictly below P; entities outside C contribute the same to both.
--   - an entity outside C keeps its path: its new count is its stored count + delta(its path);
--   - an entity of C active now at path P: count_then(P) is its stored count when its path did
--     not change, else the number of table rows strictly below P (an index scan of what was
--     there: nothing, for a subtree moved to a new place; the old subtree, for a reactivation).
--     Counting what the table holds keeps every row equal to the rows below it whichever
--     snapshot each statement read (READ COMMITTED), so later refreshes converge exactly;
--   - an entity of C not active now loses its row.
-- A moved subtree's inner counts come out unchanged on their own. The delta is computed from the
-- table and entities in one statement, before the table changes. A TRUNCATE in the batch returns
-- needs_full without changing anything.
CREATE OR REPLACE FUNCTION hierarchy_apply_descendant_counts(
    p_since pg_snapshot,
    OUT applied_snapshot pg_snapshot, OUT needs_full boolean, OUT rows_changed bigint,
    OUT rows_inserted bigint, OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
  -- Per-row index work over a few rows: JIT compiling it would cost more than running it (its
  -- generate_series and lateral estimates look large to the planner).
  SET jit = off
AS $fn$
DECLARE
  v_changed bigint[];
BEGIN
  SELECT pg_current_snapshot(), COALESCE(bool_or(r.entity_id IS NULL), false),
         COALESCE(array_agg(DISTINCT r.entity_id) FILTER (WHERE r.entity_id IS NOT NULL), '{}')
    INTO applied_snapshot, needs_full, v_changed
    FROM hierarchy_change_rows r
   WHERE pg_visible_in_snapshot(r.xid, pg_current_snapshot())
     AND NOT pg_visible_in_snapshot(r.xid, p_since);
  rows_changed := 0; rows_inserted := 0; rows_deleted := 0; changed_ids := '{}';
  IF needs_full OR cardinality(v_changed) = 0 THEN
    RETURN;
  END IF;

  EXECUTE $q$
    WITH state AS MATERIALIZED (
      SELECT c.id, o.path AS old_path, o.path_depth AS old_depth, o.descendant_count AS old_count,
             n.id IS NOT NULL AS active_now, n.name, n.path, n.path_depth, n.confidence_score
        FROM unnest($1) AS c(id)
        LEFT JOIN mv_descendant_counts o ON o.entity_id = c.id
        LEFT JOIN entities n ON n.id = c.id AND n.is_active
    ),
    delta AS MATERIALIZED (
      SELECT x.key, sum(x.d)::bigint AS d
        FROM (SELECT ltree2text(subpath(s.path, 0, l.level)) AS key, 1 AS d
                FROM state s CROSS JOIN LATERAL generate_series(1, s.path_depth - 1) AS l(level)
               WHERE s.active_now
              UNION ALL
              SELECT ltree2text(subpath(s.old_path, 0, l.level)), -1
                FROM state s CROSS JOIN LATERAL generate_series(1, s.old_depth - 1) AS l(level)
               WHERE s.old_path IS NOT NULL) x
       GROUP BY x.key
      HAVING sum(x.d) <> 0
    ),
    -- count_then for the entities whose path changed, set-based: one index scan of the table
    -- below each of them that is not below another (a moved subtree's root), each row found
    -- counted for every such path above it. A correlated count per entity would scan the same
    -- subtree once per entity in it.
    relocated AS MATERIALIZED (
      SELECT s.id, s.path FROM state s
       WHERE s.active_now AND s.old_path IS DISTINCT FROM s.path
    ),
    nested AS MATERIALIZED (
      SELECT DISTINCT m.id
        FROM relocated m CROSS JOIN LATERAL generate_series(1, nlevel(m.path) - 1) AS l(level)
        JOIN relocated q ON ltree2text(q.path) = ltree2text(subpath(m.path, 0, l.level))
    ),
    below AS MATERIALIZED (
      SELECT ltree2text(subpath(b.path, 0, l.level)) AS key, count(*) AS n
        FROM relocated m
        CROSS JOIN LATERAL (SELECT t.path FROM mv_descendant_counts t
                             WHERE t.path <@ m.path AND t.path <> m.path) b
        CROSS JOIN LATERAL generate_series(nlevel(m.path), nlevel(b.path) - 1) AS l(level)
       WHERE m.id NOT IN (SELECT n.id FROM nested n)
       GROUP BY 1
    ),
    deleted AS (
      DELETE FROM mv_descendant_counts t USING state s
       WHERE t.entity_id = s.id AND s.old_path IS NOT NULL AND NOT s.active_now
      RETURNING t.entity_id
    ),
    adjusted AS (
      UPDATE mv_descendant_counts t
         SET descendant_count = t.descendant_count + dl.d
        FROM delta dl
       WHERE t.path_depth = nlevel(text2ltree(dl.key)) AND t.path = text2ltree(dl.key)
         AND NOT EXISTS (SELECT 1 FROM state s WHERE s.id = t.entity_id)
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO mv_descendant_counts AS t
             (entity_id, name, path, path_depth, confidence_score, descendant_count)
      SELECT s.id, s.name, s.path, s.path_depth, s.confidence_score,
             CASE WHEN s.old_path = s.path THEN s.old_count ELSE COALESCE(bl.n, 0)
             END + COALESCE(dl.d, 0)
        FROM state s
        LEFT JOIN delta dl ON dl.key = ltree2text(s.path)
        LEFT JOIN below bl ON bl.key = ltree2text(s.path)
       WHERE s.active_now
      ON CONFLICT (entity_id) DO UPDATE
         SET name = EXCLUDED.name, path = EXCLUDED.path, path_depth = EXCLUDED.path_depth,
             confidence_score = EXCLUDED.confidence_score,
             descendant_count = EXCLUDED.descendant_count
       WHERE (t.name, t.path, t.path_depth, t.confidence_score, t.descendant_count)
             IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.path, EXCLUDED.path_depth,
                               EXCLUDED.confidence_score, EXCLUDED.descendant_count)
      RETURNING t.entity_id, (t.xmax = 0) AS inserted
    ),
    changed AS (
      SELECT entity_id, false AS inserted, true AS deleted FROM deleted
      UNION ALL
      SELECT entity_id, false, false FROM adjusted
      UNION ALL
      SELECT entity_id, inserted, false FROM upserted
    )
    SELECT (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT COALESCE(array_agg(c.entity_id), '{}') FROM (SELECT entity_id FROM changed LIMIT 1001) c)$q$
    INTO rows_changed, rows_inserted, rows_deleted, changed_ids USING v_changed;
END
$fn$;

-- Method `full` of the incremental strategy: recomputes a view's table from its definition and
-- applies only the difference (deletes, inserts, updates of changed rows), so readers are never
-- blocked and unchanged rows are not rewritten. Used after a TRUNCATE, for a large pending set,
-- for `refresh --full`, and to restore a table that drifted (`verify --data` finds drift).
-- One statement, one snapshot: the snapshot returned is the one the definition was read in.
-- The columns compared come from the definition view, so they cannot fall out of step with it.
CREATE OR REPLACE FUNCTION hierarchy_reconcile_view(
    p_view text,
    OUT applied_snapshot pg_snapshot, OUT rows_changed bigint, OUT rows_inserted bigint,
    OUT rows_deleted bigint, OUT changed_ids bigint[])
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
DECLARE
  v_definition text := CASE p_view
    WHEN 'mv_entity_ancestors' THEN 'hierarchy_ancestors_definition'
    WHEN 'mv_descendant_counts' THEN 'hierarchy_descendant_counts_definition' END;
  v_columns text;
  v_excluded text;
  v_current text;
BEGIN
  IF v_definition IS NULL THEN
    RAISE EXCEPTION 'unknown view %', quote_nullable(p_view)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
         string_agg('EXCLUDED.' || quote_ident(a.attname), ', ' ORDER BY a.attnum),
         string_agg('t.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
    INTO v_columns, v_excluded, v_current
    FROM pg_attribute a
   WHERE a.attrelid = v_definition::regclass AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname <> 'entity_id';
  EXECUTE format($q$
    WITH snap AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
    fresh AS MATERIALIZED (SELECT * FROM %2$I),
    deleted AS (
      DELETE FROM %1$I t
       WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.entity_id = t.entity_id)
      RETURNING t.entity_id
    ),
    upserted AS (
      INSERT INTO %1$I AS t (entity_id, %3$s)
      SELECT entity_id, %3$s FROM fresh
      ON CONFLICT (entity_id) DO UPDATE SET (%3$s) = ROW(%4$s)
       WHERE (%5$s) IS DISTINCT FROM (%4$s)
      RETURNING t.entity_id, (t.xmax = 0) AS inserted
    ),
    changed AS (
      SELECT entity_id, false AS inserted, true AS deleted FROM deleted
      UNION ALL
      SELECT entity_id, inserted, false FROM upserted
    )
    SELECT snap.s,
           (SELECT count(*) FROM changed),
           (SELECT count(*) FROM changed WHERE inserted),
           (SELECT count(*) FROM changed WHERE deleted),
           (SELECT array_agg(c.entity_id) FROM (SELECT entity_id FROM changed LIMIT 1001) c)
      FROM snap$q$, p_view, v_definition, v_columns, v_excluded, v_current)
    INTO applied_snapshot, rows_changed, rows_inserted, rows_deleted, changed_ids;
END
$fn$;

-- The one way a view's relation is (re)built: for a definition change (migrations), for `repair`
-- and for a strategy switch (hierarchy_set_view_strategy). Readers never wait for the build:
--   1. build the new relation beside the old one, under `<view>_rebuild`, from the view's
--      definition (a materialized view selecting from it, or, for the incremental strategy, a
--      table filled from it in path order so a subtree's rows share pages), with its indexes;
--   2. swap: drop the old relation, rename the new one and its indexes, re-grant the old
--      relation's privileges (or SELECT to hierarchy_reader for a relation that was missing).
-- The swap takes an ACCESS EXCLUSIVE lock on the old relation, held to the end of the caller's
-- transaction: commit right after. It is tried with a short lock_timeout and retried, so a
-- long-running reader makes it wait instead of queueing every other reader behind it.
-- It waits for a running refresh (the single-flight lock), records the strategy and the
-- snapshot the new contents reflect in hierarchy_view_state, and writes one audit row.
CREATE OR REPLACE FUNCTION hierarchy_rebuild_view(
    p_view text,
    p_strategy text DEFAULT NULL,
    p_reason text DEFAULT 'rebuilt',
    p_trigger text DEFAULT 'sql')
  RETURNS TABLE (view_name text, strategy text, method text, rows bigint, duration_ms double precision)
  LANGUAGE plpgsql VOLATILE
  SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
  v_definition text := CASE p_view
    WHEN 'mv_entity_ancestors' THEN 'hierarchy_ancestors_definition'
    WHEN 'mv_descendant_counts' THEN 'hierarchy_descendant_counts_definition' END;
  v_build       text := p_view || '_rebuild';
  v_strategy    text;
  v_kind        "char";
  v_owner       oid;
  v_acl         aclitem[];
  v_snapshot    pg_snapshot;
  v_as_of       timestamptz;
  v_rows        bigint;
  v_started     timestamptz := clock_timestamp();
  v_attempts    integer := 0;
  v_lock_timeout text := current_setting('lock_timeout');
  v_grant       record;
  v_suffix      text;
  c_suffixes    constant text[] := ARRAY['entity_id_key', 'path_gist', 'depth_path_idx'];
BEGIN
  IF v_definition IS NULL THEN
    RAISE EXCEPTION 'unknown view %', quote_nullable(p_view)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT COALESCE(p_strategy, s.strategy, 'materialized') INTO v_strategy
    FROM (SELECT 1) one LEFT JOIN hierarchy_view_state s ON s.view_name = p_view;
  IF v_strategy NOT IN ('materialized', 'incremental') THEN
    RAISE EXCEPTION 'unknown strategy %', quote_nullable(v_strategy)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'strategies are materialized and incremental';
  END IF;
  IF p_trigger IS NULL OR p_trigger NOT IN ('schedule', 'change', 'manual', 'sql') THEN
    RAISE EXCEPTION 'unknown refresh trigger %', quote_nullable(p_trigger)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'use one of schedule, change, manual, sql';
  END IF;

  -- No refresh may run on the old relation while its replacement is built.
  PERFORM pg_advisory_xact_lock(4107315530992118);

  SELECT c.relkind, c.relowner, c.relacl INTO v_kind, v_owner, v_acl
    FROM pg_class c WHERE c.oid = to_regclass(p_view);
  IF v_kind IS NOT NULL AND v_kind NOT IN ('m', 'r') THEN
    RAISE EXCEPTION '% exists but is neither a materialized view nor a table', p_view
      USING ERRCODE = 'wrong_object_type', HINT = 'drop or rename it, then run hierarchy-db repair';
  END IF;

  IF v_strategy = 'incremental' THEN
    EXECUTE format('CREATE TABLE %I (LIKE %I) WITH (fillfactor = %s)', v_build, v_definition,
                   CASE WHEN p_view = 'mv_descendant_counts' THEN 80 ELSE 90 END);
    v_as_of := clock_timestamp();
    -- One statement: the snapshot returned is the one the definition was read in.
    EXECUTE format('WITH filled AS (INSERT INTO %I SELECT * FROM %I ORDER BY path RETURNING 1) '
                   'SELECT pg_current_snapshot(), count(*) FROM filled', v_build, v_definition)
      INTO v_snapshot, v_rows;
  ELSE
    -- Taken before the build reads: whatever it saw is in the data (conservative).
    v_snapshot := pg_current_snapshot();
    v_as_of := clock_timestamp();
    EXECUTE format('CREATE MATERIALIZED VIEW %I AS SELECT * FROM %I WITH DATA', v_build, v_definition);
    EXECUTE format('SELECT count(*) FROM %I', v_build) INTO v_rows;
  END IF;
  -- The unique index has no WHERE clause: REFRESH ... CONCURRENTLY and ON CONFLICT need it.
  EXECUTE format('CREATE UNIQUE INDEX %I ON %I (entity_id)', v_build || '_entity_id_key', v_build);
  EXECUTE format('CREATE INDEX %I ON %I USING gist (path)', v_build || '_path_gist', v_build);
  EXECUTE format('CREATE INDEX %I ON %I (path_depth, path)', v_build || '_depth_path_idx', v_build);

  LOOP
    BEGIN
      PERFORM set_config('lock_timeout', '100ms', true);
      IF v_kind = 'm' THEN
        EXECUTE format('DROP MATERIALIZED VIEW %I', p_view);
      ELSIF v_kind = 'r' THEN
        EXECUTE format('DROP TABLE %I', p_view);
      END IF;
      EXECUTE format('ALTER %s %I RENAME TO %I',
                     CASE WHEN v_strategy = 'incremental' THEN 'TABLE' ELSE 'MATERIALIZED VIEW' END,
                     v_build, p_view);
      FOREACH v_suffix IN ARRAY c_suffixes LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', v_build || '_' || v_suffix, p_view || '_' || v_suffix);
      END LOOP;
      EXIT;
    EXCEPTION WHEN lock_not_available THEN
      v_attempts := v_attempts + 1;
      IF v_attempts >= 100 THEN
        RAISE EXCEPTION 'could not swap in the rebuilt % within 10 s: a long transaction is reading it', p_view
          USING ERRCODE = 'lock_not_available',
                HINT = 'find it in pg_stat_activity, end it, and run the command again';
      END IF;
      PERFORM set_config('lock_timeout', v_lock_timeout, true);
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
  PERFORM set_config('lock_timeout', v_lock_timeout, true);

  IF v_acl IS NOT NULL THEN
    FOR v_grant IN
      SELECT a.grantee, a.privilege_type, a.is_grantable FROM aclexplode(v_acl) a WHERE a.grantee <> v_owner
    LOOP
      EXECUTE format('GRANT %s ON %I TO %s%s', v_grant.privilege_type, p_view,
                     CASE WHEN v_grant.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(v_grant.grantee)) END,
                     CASE WHEN v_grant.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
  ELSIF v_kind IS NULL AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT SELECT ON %I TO hierarchy_reader', p_view);
  END IF;

  INSERT INTO hierarchy_view_state AS s (view_name, strategy, snapshot, data_as_of, last_refreshed_at, row_count)
  VALUES (p_view, v_strategy, v_snapshot, v_as_of, clock_timestamp(), v_rows)
  ON CONFLICT (view_name) DO UPDATE
    SET strategy = EXCLUDED.strategy, snapshot = EXCLUDED.snapshot, data_as_of = EXCLUDED.data_as_of,
        last_refreshed_at = EXCLUDED.last_refreshed_at, row_count = EXCLUDED.row_count;

  INSERT INTO mv_refresh_audit (view_name, trigger, status, reason, method, started_at, finished_at,
                                duration_ms, rows, rows_changed, data_as_of, application_name, backend_pid)
  VALUES (p_view, p_trigger, 'refreshed', p_reason, 'rebuild', v_started, clock_timestamp(),
          round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
          v_rows, v_rows, v_as_of, current_setting('application_name', true), pg_backend_pid());

  view_name := p_view;
  strategy := v_strategy;
  method := 'rebuild';
  rows := v_rows;
  duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
  RETURN NEXT;
END
$fn$;

-- Switches views between the materialized and incremental strategies, online, in short
-- transactions of its own (so: CALL it outside an explicit transaction block):
--   1. to incremental: enable row-level change capture and commit, so every write not visible to
--      the build below is captured (hierarchy_set_row_capture.sql);
--   2. per view whose strategy or relation kind differs: rebuild it beside the old relation and
--      swap (hierarchy_rebuild_view.sql), then commit;
--   3. when no view is incremental any more: disable capture and commit.
-- Idempotent: a view already in the wanted strategy, with the matching relation kind, is left as
-- it is. A procedure with transaction control cannot pin search_path, so it resolves the
-- functions it calls through the caller's search_path: call it with the hierarchy's schema on it
-- (`hierarchy-db views set-strategy` does).
CREATE OR REPLACE PROCEDURE hierarchy_set_view_strategy(
    p_strategy text,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql')
  LANGUAGE plpgsql
AS $fn$
DECLARE
  c_all_views constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
  v_view     text;
  v_views    text[];
  v_capture  boolean;
BEGIN
  IF p_strategy IS NULL OR p_strategy NOT IN ('materialized', 'incremental') THEN
    RAISE EXCEPTION 'unknown strategy %', quote_nullable(p_strategy)
      USING ERRCODE = 'invalid_parameter_value', HINT = 'strategies are materialized and incremental';
  END IF;
  IF p_views IS NOT NULL AND NOT (p_views <@ c_all_views) THEN
    RAISE EXCEPTION 'unknown view in %', p_views
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  SELECT array_agg(v ORDER BY ord) INTO v_views
    FROM unnest(c_all_views) WITH ORDINALITY AS t(v, ord)
   WHERE p_views IS NULL OR v = ANY (p_views);

  SELECT bool_and(t.tgenabled <> 'D') INTO v_capture
    FROM pg_trigger t
   WHERE t.tgrelid = 'entities'::regclass AND t.tgname LIKE 'entities\_capture\_%';
  IF p_strategy = 'incremental' AND NOT v_capture THEN
    PERFORM hierarchy_set_row_capture(true);
    COMMIT;
  END IF;

  FOREACH v_view IN ARRAY v_views LOOP
    IF NOT EXISTS (
      SELECT 1 FROM hierarchy_view_state s JOIN pg_class c ON c.oid = to_regclass(s.view_name)
       WHERE s.view_name = v_view AND s.strategy = p_strategy
         AND c.relkind = CASE p_strategy WHEN 'incremental' THEN 'r' ELSE 'm' END::"char"
    ) THEN
      PERFORM hierarchy_rebuild_view(v_view, p_strategy, 'strategy_changed', p_trigger);
      COMMIT;
    END IF;
  END LOOP;

  IF p_strategy = 'materialized' AND v_capture
     AND NOT EXISTS (SELECT 1 FROM hierarchy_view_state s WHERE s.strategy = 'incremental') THEN
    PERFORM hierarchy_set_row_capture(false);
    COMMIT;
  END IF;
END
$fn$;

-- refresh_hierarchy_views(): the one refresh path, shared by the CLI, the daemon and psql users
-- (docs/semantics.md, "Refreshing"). Returns one row per view:
--   status   refreshed | skipped | failed | cancelled
--   reason   a code decided from state or SQLSTATE, never from message text: no_changes,
--            lock_busy, statement_timeout, lock_timeout, cancelled, missing, error, or null
--   method   concurrent | plain (materialized strategy), incremental | full (incremental)
--
-- A function, not a procedure: `SELECT * FROM refresh_hierarchy_views()` must return rows. So it
-- runs in the caller's transaction, and each view is refreshed in its own subtransaction (the
-- BEGIN ... EXCEPTION block): a failure in one view rolls back only that view, and its audit row
-- is written after the rollback, so it commits with everything else.
--
-- Single-flight: pg_try_advisory_xact_lock. A second caller does not queue behind the first; it
-- returns `skipped` / `lock_busy` at once, names the holder, and is audited. A clean skip (nothing
-- pending) is counted on hierarchy_view_state, not audited: a 5-second schedule would write
-- 35 000 rows a day.
--
-- Staleness: a materialized view records pg_current_snapshot() taken just before its REFRESH
-- (REFRESH reads a snapshot at least as new: conservative, never loses a change). An incremental
-- view records the exact snapshot its apply statement read (hierarchy_apply_*.sql).
--
-- Timeouts are the caller's: statement_timeout bounds the whole call, lock_timeout each lock
-- wait. Both a statement timeout and a cancel raise 57014; they are told apart by the time the
-- statement has run against the statement_timeout in force. A statement timeout fails the view
-- being refreshed and skips the rest; a cancel marks it and the rest `cancelled`.
--
-- After a refresh that changed rows, one NOTIFY on hierarchy_views_refreshed with
-- {"views", "rows_changed", "entity_ids", "all"}: the ids of the changed rows when there are at
-- most 300 and every refreshed view could name them, else "all": true (a materialized view's
-- REFRESH cannot name them). Sent by the refresher, once per call: writers never notify.
CREATE OR REPLACE FUNCTION refresh_hierarchy_views(
    p_force boolean DEFAULT false,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql',
    p_full boolean DEFAULT false)
  RETURNS TABLE (view_name text, status text, reason text, method text, duration_ms double precision,
                 rows bigint, rows_changed bigint, staleness_ms bigint, error_code text,
                 error_message text)
  LANGUAGE plpgsql VOLATILE SECURITY DEFINER
  SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
  c_all_views    constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
  c_lock_key     constant bigint := 4107315530992118;
  c_max_ids      constant integer := 300;
  v_views        text[];
  v_view         text;
  v_started      timestamptz;
  v_pending      bigint;
  v_oldest       timestamptz;
  v_staleness    bigint;
  v_state        hierarchy_view_state%ROWTYPE;
  v_kind         "char";
  v_populated    boolean;
  v_capture      boolean;
  v_snapshot     pg_snapshot;
  v_as_of        timestamptz;
  v_rows         bigint;
  v_changed      bigint;
  v_status       text;
  v_reason       text;
  v_method       text;
  v_code         text;
  v_message      text;
  v_holder       integer;
  v_stop_status  text;
  v_stop_reason  text;
  v_stop_message text;
  v_stop_code    text;
  v_locked       boolean := false;
  v_apply        record;
  v_pending_rows bigint;
  v_truncated    boolean;
  v_timeout_ms   bigint;
  v_ids          bigint[] := '{}';
  v_ids_known    boolean := true;
  v_count_known  boolean := true;
  v_total        bigint := 0;
  v_notify_views text[] := '{}';
BEGIN
  IF p_trigger IS NULL OR p_trigger NOT IN ('schedule', 'change', 'manual', 'sql') THEN
    RAISE EXCEPTION 'unknown refresh trigger %', quote_nullable(p_trigger)
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'use one of schedule, change, manual, sql';
  END IF;
  IF p_views IS NOT NULL AND NOT (p_views <@ c_all_views) THEN
    RAISE EXCEPTION 'unknown view in %', p_views
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
  END IF;
  -- Keep the canonical order (ancestors first) whatever order the caller gave.
  SELECT array_agg(v ORDER BY ord) INTO v_views
    FROM unnest(c_all_views) WITH ORDINALITY AS t(v, ord)
   WHERE p_views IS NULL OR v = ANY (p_views);
  -- An empty list is a no-op: callers use it to have this function compiled in their session
  -- before arming a short statement_timeout.
  IF v_views IS NULL THEN
    RETURN;
  END IF;

  -- Every step that a statement timeout or a cancel can interrupt runs inside a BEGIN ...
  -- EXCEPTION block, so an interruption is recorded instead of aborting the call.
  BEGIN
    v_locked := pg_try_advisory_xact_lock(c_lock_key);
    IF NOT v_locked THEN
      SELECT l.pid INTO v_holder FROM pg_locks l
       WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         AND l.classid = (c_lock_key >> 32)::oid
         AND l.objid = (c_lock_key & 4294967295)::oid
       LIMIT 1;
      v_stop_status := 'skipped';
      v_stop_reason := 'lock_busy';
      v_stop_message := 'another refresh is running' ||
        COALESCE(' (backend pid ' || v_holder || ')', '') || '; not queued behind it';
    END IF;
  EXCEPTION WHEN query_canceled THEN
    v_locked := false;
    v_timeout_ms := (SELECT s.setting::bigint FROM pg_settings s WHERE s.name = 'statement_timeout');
    IF v_timeout_ms > 0 AND extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 + 5 >= v_timeout_ms THEN
      v_stop_status := 'failed'; v_stop_reason := 'statement_timeout';
    ELSE
      v_stop_status := 'cancelled'; v_stop_reason := 'cancelled';
    END IF;
    GET STACKED DIAGNOSTICS v_stop_code = RETURNED_SQLSTATE, v_stop_message = MESSAGE_TEXT;
    v_stop_message := v_stop_message || ' (before the refresh started)';
  END;

  FOREACH v_view IN ARRAY v_views LOOP
    v_started := clock_timestamp();
    v_rows := NULL; v_changed := NULL; v_code := NULL; v_message := NULL; v_as_of := NULL;
    v_pending := NULL; v_staleness := NULL; v_reason := NULL; v_method := NULL;

    IF v_stop_status IS NOT NULL THEN
      v_status := v_stop_status;
      v_reason := v_stop_reason;
      v_message := v_stop_message;
      v_code := v_stop_code;
    ELSE
      BEGIN
        SELECT p.pending_changes, p.oldest_change_at INTO v_pending, v_oldest
          FROM hierarchy_pending_changes(v_view) p;
        v_staleness := CASE WHEN v_oldest IS NULL THEN 0
          ELSE GREATEST(0, floor(extract(epoch FROM v_started - v_oldest) * 1000))::bigint END;
        SELECT * INTO v_state FROM hierarchy_view_state s WHERE s.view_name = v_view;
        SELECT c.relkind, c.relispopulated INTO v_kind, v_populated
          FROM pg_class c WHERE c.oid = to_regclass(v_view);
        IF v_kind IS NULL THEN
          v_status := 'failed'; v_reason := 'missing'; v_code := '42P01';
          v_message := format('%s does not exist; run hierarchy-db repair', v_view);
        ELSIF v_kind <> (CASE v_state.strategy WHEN 'incremental' THEN 'r' ELSE 'm' END)::"char" THEN
          v_status := 'failed'; v_reason := 'missing'; v_code := '42809';
          v_message := format('%s is a %s but its strategy is %s; run hierarchy-db repair', v_view,
                              CASE v_kind WHEN 'r' THEN 'table' WHEN 'm' THEN 'materialized view' ELSE 'relation of another kind' END,
                              v_state.strategy);
        ELSIF v_populated AND v_pending = 0 AND NOT p_force AND NOT p_full THEN
          v_status := 'skipped'; v_reason := 'no_changes';
          v_message := 'no pending changes';
          UPDATE hierarchy_view_state s SET clean_skips = s.clean_skips + 1, last_checked_at = clock_timestamp()
           WHERE s.view_name = v_view;
        ELSIF v_state.strategy = 'materialized' THEN
          v_snapshot := pg_current_snapshot();
          v_as_of := clock_timestamp();
          IF v_populated THEN
            v_method := 'concurrent';
            EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v_view);
          ELSE
            -- CONCURRENTLY needs a populated view: the first refresh is a plain one.
            v_method := 'plain';
            EXECUTE format('REFRESH MATERIALIZED VIEW %I', v_view);
          END IF;
          EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
          -- REFRESH cannot tell which rows changed, nor how many.
          v_ids_known := false;
          v_count_known := false;
          UPDATE hierarchy_view_state s
             SET snapshot = v_snapshot, data_as_of = v_as_of, last_refreshed_at = clock_timestamp(),
                 row_count = v_rows
           WHERE s.view_name = v_view;
          v_status := 'refreshed';
          v_notify_views := v_notify_views || v_view;
        ELSE
          -- Incremental. Recompute from the definition (method full) when asked, when the table
          -- reflects no known snapshot, when capture is off (changes were not recorded), after a
          -- TRUNCATE, or when the pending set is a large share of the table.
          SELECT bool_and(t.tgenabled <> 'D') INTO v_capture
            FROM pg_trigger t
           WHERE t.tgrelid = 'entities'::regclass AND t.tgname LIKE 'entities\_capture\_%';
          v_apply := NULL;
          IF NOT p_full AND v_state.snapshot IS NOT NULL AND v_capture THEN
            SELECT count(*), COALESCE(bool_or(r.entity_id IS NULL), false) INTO v_pending_rows, v_truncated
              FROM hierarchy_change_rows r
             WHERE NOT pg_visible_in_snapshot(r.xid, v_state.snapshot);
            IF NOT v_truncated AND v_pending_rows <= GREATEST(10000, COALESCE(v_state.row_count, 0) / 5) THEN
              IF v_view = 'mv_entity_ancestors' THEN
                SELECT * INTO v_apply FROM hierarchy_apply_ancestors(v_state.snapshot);
              ELSE
                SELECT * INTO v_apply FROM hierarchy_apply_descendant_counts(v_state.snapshot);
              END IF;
              IF v_apply.needs_full THEN
                v_apply := NULL;
              ELSE
                v_method := 'incremental';
              END IF;
            END IF;
          END IF;
          IF v_apply IS NULL THEN
            v_method := 'full';
            SELECT * INTO v_apply FROM hierarchy_reconcile_view(v_view);
          END IF;
          v_snapshot := v_apply.applied_snapshot;
          v_as_of := clock_timestamp();
          v_changed := v_apply.rows_changed;
          v_rows := CASE WHEN v_method = 'full' OR v_state.row_count IS NULL
                         THEN NULL
                         ELSE v_state.row_count + v_apply.rows_inserted - v_apply.rows_deleted END;
          IF v_rows IS NULL THEN
            EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
          END IF;
          UPDATE hierarchy_view_state s
             SET snapshot = v_snapshot, data_as_of = v_as_of, last_refreshed_at = clock_timestamp(),
                 row_count = v_rows
           WHERE s.view_name = v_view;
          v_status := 'refreshed';
          IF v_changed > 0 THEN
            v_notify_views := v_notify_views || v_view;
            v_total := v_total + v_changed;
            IF v_changed > c_max_ids THEN
              v_ids_known := false;
            ELSE
              v_ids := v_ids || v_apply.changed_ids;
            END IF;
          END IF;
        END IF;
      EXCEPTION
        WHEN query_canceled THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_notify_views := array_remove(v_notify_views, v_view);
          v_timeout_ms := (SELECT s.setting::bigint FROM pg_settings s WHERE s.name = 'statement_timeout');
          IF v_timeout_ms > 0 AND extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000 + 5 >= v_timeout_ms THEN
            v_status := 'failed'; v_reason := 'statement_timeout';
            v_stop_status := 'skipped'; v_stop_reason := 'statement_timeout';
            v_stop_message := format('not attempted: statement timeout reached while refreshing %s', v_view);
          ELSE
            v_status := 'cancelled'; v_reason := 'cancelled';
            v_stop_status := 'cancelled'; v_stop_reason := 'cancelled';
            v_stop_message := format('not attempted: cancelled while refreshing %s', v_view);
          END IF;
        WHEN lock_not_available THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_status := 'failed'; v_reason := 'lock_timeout';
        WHEN OTHERS THEN
          GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
          v_rows := NULL; v_changed := NULL; v_as_of := NULL;
          v_status := 'failed'; v_reason := 'error';
      END;
    END IF;

    IF v_reason IS DISTINCT FROM 'no_changes' THEN
      INSERT INTO mv_refresh_audit (view_name, trigger, status, reason, method, started_at, finished_at,
                                    duration_ms, rows, rows_changed, staleness_ms, pending_changes,
                                    data_as_of, error_code, error_message, application_name, backend_pid)
      VALUES (v_view, p_trigger, v_status, v_reason, v_method, v_started, clock_timestamp(),
              round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
              v_rows, v_changed, v_staleness, v_pending, v_as_of, v_code, v_message,
              current_setting('application_name', true), pg_backend_pid());
    END IF;

    view_name := v_view;
    status := v_status;
    reason := v_reason;
    method := v_method;
    duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
    rows := v_rows;
    rows_changed := v_changed;
    staleness_ms := v_staleness;
    error_code := v_code;
    error_message := v_message;
    RETURN NEXT;
  END LOOP;

  IF v_locked THEN
    BEGIN
      IF cardinality(v_notify_views) > 0 THEN
        PERFORM pg_notify('hierarchy_views_refreshed', json_build_object(
          'views', v_notify_views,
          'rows_changed', CASE WHEN v_count_known THEN v_total END,
          'entity_ids', CASE WHEN v_ids_known AND cardinality(v_ids) <= c_max_ids
                             THEN (SELECT array_agg(DISTINCT i ORDER BY i) FROM unnest(v_ids) i) END,
          'all', NOT (v_ids_known AND cardinality(v_ids) <= c_max_ids))::text);
      END IF;
      -- Logged transactions every view reflects are no longer needed. Below the oldest xmin of
      -- the views' snapshots every xid is visible to all of them: a range delete on the key.
      DELETE FROM hierarchy_changes c
       WHERE c.xid < (SELECT min(pg_snapshot_xmin(s.snapshot)) FROM hierarchy_view_state s
                       WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                      HAVING count(*) = cardinality(c_all_views));
      DELETE FROM hierarchy_changes c
       WHERE c.xid >= (SELECT min(pg_snapshot_xmin(s.snapshot)) FROM hierarchy_view_state s
                        WHERE s.view_name = ANY (c_all_views))
         AND (SELECT count(*) FROM hierarchy_view_state s
               WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                 AND pg_visible_in_snapshot(c.xid, s.snapshot)) = cardinality(c_all_views);
      -- Captured rows every incremental view has applied are no longer needed either.
      DELETE FROM hierarchy_change_rows r
       WHERE NOT EXISTS (SELECT 1 FROM hierarchy_view_state s
                          WHERE s.strategy = 'incremental'
                            AND (s.snapshot IS NULL OR NOT pg_visible_in_snapshot(r.xid, s.snapshot)));
      -- Audit retention: 30 days unless ALTER DATABASE ... SET hierarchy_db.audit_retention = '7 days'.
      DELETE FROM mv_refresh_audit a
       WHERE a.started_at < now() - COALESCE(NULLIF(current_setting('hierarchy_db.audit_retention', true), ''), '30 days')::interval;
    EXCEPTION WHEN query_canceled THEN
      NULL; -- housekeeping only: the next call does it
    END;
  END IF;
END
$fn$;

-- The materialized views now select from their definition views; rebuilt beside the old ones and
-- swapped in, so readers do not wait for the rebuild. Grants carry over.
SELECT * FROM hierarchy_rebuild_view('mv_entity_ancestors', 'materialized', 'definition_changed');
SELECT * FROM hierarchy_rebuild_view('mv_descendant_counts', 'materialized', 'definition_changed');

-- Roles and privileges (docs/semantics.md, "Roles"). Idempotent: migrations and `repair` run it.
--   hierarchy_reader     reads the views, their status and the audit (status, history)
--   hierarchy_refresher  runs refresh_hierarchy_views() and the daemon's change probe
-- A daemon logs in with both. The roles are created when the migrating role may create roles,
-- and skipped with a notice when it may not. No function of the project is executable by PUBLIC.
REVOKE ALL ON FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_view_status() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_pending_changes(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_changes_probe() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_track_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION entities_touch_updated_at() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_capture_rows() FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_set_row_capture(boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_apply_ancestors(pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_apply_descendant_counts(pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_reconcile_view(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION hierarchy_rebuild_view(text, text, text, text) FROM PUBLIC;
REVOKE ALL ON PROCEDURE hierarchy_set_view_strategy(text, text[], text) FROM PUBLIC;

DO $do$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
    -- Roles are cluster-wide: another database may have created them, possibly right now.
    BEGIN
      CREATE ROLE hierarchy_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
      CREATE ROLE hierarchy_refresher NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')) THEN
    RAISE NOTICE 'hierarchy-db: role % may not create roles; skipping hierarchy_reader and hierarchy_refresher', current_user;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_reader', current_schema());
    GRANT SELECT ON mv_entity_ancestors, mv_descendant_counts TO hierarchy_reader;
    GRANT SELECT ON mv_refresh_audit TO hierarchy_reader;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_reader;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_refresher') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_refresher', current_schema());
    GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text, boolean) TO hierarchy_refresher;
    GRANT EXECUTE ON FUNCTION hierarchy_changes_probe() TO hierarchy_refresher;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_refresher;
  END IF;
END
$do$;

-- Down Migration
-- Back to 0004's objects: materialized views with their own queries (built in this transaction:
-- readers wait for the commit), 0003's functions (writers notify again), no row capture.
SELECT set_config('search_path', format('%I, pg_temp', current_schema()), true);

DROP TRIGGER IF EXISTS entities_capture_insert ON entities;
DROP TRIGGER IF EXISTS entities_capture_update ON entities;
DROP TRIGGER IF EXISTS entities_capture_delete ON entities;
DROP TRIGGER IF EXISTS entities_capture_truncate ON entities;

DO $do$
DECLARE
  v_view text;
BEGIN
  FOREACH v_view IN ARRAY ARRAY['mv_entity_ancestors', 'mv_descendant_counts'] LOOP
    IF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass(v_view) AND relkind = 'm') THEN
      EXECUTE format('DROP MATERIALIZED VIEW %I', v_view);
    ELSIF EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass(v_view) AND relkind = 'r') THEN
      EXECUTE format('DROP TABLE %I', v_view);
    END IF;
  END LOOP;
END
$do$;

CREATE MATERIALIZED VIEW mv_entity_ancestors AS 
    WITH RECURSIVE chain AS (
      SELECT e.id, e.name, e.path, e.path_depth, e.confidence_score, e.is_active,
             '{}'::bigint[] AS ancestor_ids,
             '{}'::text[] AS ancestors
        FROM entities e
       WHERE e.parent_path IS NULL
      UNION ALL
      SELECT c.id, c.name, c.path, c.path_depth, c.confidence_score, c.is_active,
             p.ancestor_ids || p.id,
             p.ancestors || p.name
        FROM chain p
        JOIN entities c ON c.parent_path = p.path
    )
    SELECT id AS entity_id, name, path, path_depth, confidence_score, ancestor_ids, ancestors
      FROM chain
     WHERE is_active
     ORDER BY id WITH DATA;

CREATE UNIQUE INDEX mv_entity_ancestors_entity_id_key ON mv_entity_ancestors (entity_id);

CREATE INDEX mv_entity_ancestors_path_gist ON mv_entity_ancestors USING gist (path);

CREATE INDEX mv_entity_ancestors_depth_path_idx ON mv_entity_ancestors (path_depth, path);

CREATE MATERIALIZED VIEW mv_descendant_counts AS 
    SELECT e.id AS entity_id, e.name, e.path, e.path_depth, e.confidence_score,
           COALESCE(below.descendant_count, 0)::bigint AS descendant_count
      FROM entities e
      LEFT JOIN (
        SELECT ltree2text(subpath(k.parent_path, 0, level)) AS key,
               sum(k.active_children) AS descendant_count
          FROM (SELECT parent_path, count(*) AS active_children
                  FROM entities
                 WHERE is_active AND parent_path IS NOT NULL
                 GROUP BY parent_path) k
         CROSS JOIN LATERAL generate_series(1, nlevel(k.parent_path)) AS level
         GROUP BY 1
      ) below ON below.key = ltree2text(e.path)
     WHERE e.is_active
     ORDER BY e.id WITH DATA;

CREATE UNIQUE INDEX mv_descendant_counts_entity_id_key ON mv_descendant_counts (entity_id);

CREATE INDEX mv_descendant_counts_path_gist ON mv_descendant_counts USING gist (path);

CREATE INDEX mv_descendant_counts_depth_path_idx ON mv_descendant_counts (path_depth, path);


DROP VIEW IF EXISTS hierarchy_ancestors_definition;
DROP VIEW IF EXISTS hierarchy_descendant_counts_definition;
DROP PROCEDURE IF EXISTS hierarchy_set_view_strategy(text, text[], text);
DROP FUNCTION IF EXISTS hierarchy_rebuild_view(text, text, text, text);
DROP FUNCTION IF EXISTS hierarchy_reconcile_view(text);
DROP FUNCTION IF EXISTS hierarchy_apply_ancestors(pg_snapshot);
DROP FUNCTION IF EXISTS hierarchy_apply_descendant_counts(pg_snapshot);
DROP FUNCTION IF EXISTS hierarchy_changes_probe();
DROP FUNCTION IF EXISTS hierarchy_set_row_capture(boolean);
DROP FUNCTION IF EXISTS hierarchy_capture_rows();
DROP FUNCTION IF EXISTS refresh_hierarchy_views(boolean, text[], text, boolean);
DROP FUNCTION IF EXISTS hierarchy_view_status();
DROP TABLE IF EXISTS hierarchy_change_rows;
ALTER TABLE mv_refresh_audit DROP COLUMN IF EXISTS reason, DROP COLUMN IF EXISTS method,
  DROP COLUMN IF EXISTS rows_changed;
ALTER TABLE hierarchy_view_state DROP COLUMN IF EXISTS strategy, DROP COLUMN IF EXISTS row_count,
  DROP COLUMN IF EXISTS clean_skips, DROP COLUMN IF EXISTS last_checked_at;

-- 0003's functions, created as 0003 creates them.

DO $do$ BEGIN EXECUTE replace($q$
  CREATE OR REPLACE FUNCTION hierarchy_track_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
  BEGIN
    -- First tracked statement of this transaction inserts its row; later ones find it.
    -- The row is the writer's own (keyed by its xid), so concurrent writers never wait
    -- on each other here.
    INSERT INTO hierarchy_changes (xid, changed_at)
    VALUES (pg_current_xact_id(), clock_timestamp())
    ON CONFLICT (xid) DO NOTHING;
    IF FOUND THEN
      -- Once per writing transaction; delivered at commit, dropped on rollback.
      PERFORM pg_notify('hierarchy_changed', pg_current_xact_id()::text);
    END IF;
    RETURN NULL;
  END
  $fn$$q$, '__SCHEMA__', quote_ident(current_schema())); END $do$;

DO $do$ BEGIN EXECUTE replace($q$
  CREATE OR REPLACE FUNCTION hierarchy_pending_changes(
    p_view text, OUT pending_changes bigint, OUT oldest_change_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
    SELECT count(*), min(c.changed_at)
      FROM hierarchy_changes c
      LEFT JOIN hierarchy_view_state s ON s.view_name = p_view
     WHERE s.snapshot IS NULL
        OR (c.xid >= pg_snapshot_xmin(s.snapshot) AND NOT pg_visible_in_snapshot(c.xid, s.snapshot))
  $fn$$q$, '__SCHEMA__', quote_ident(current_schema())); END $do$;

DO $do$ BEGIN EXECUTE replace($q$
  CREATE OR REPLACE FUNCTION hierarchy_view_status()
    RETURNS TABLE (view_name text, populated boolean, staleness_ms bigint, pending_changes bigint,
                   oldest_change_at timestamptz, data_as_of timestamptz, last_refreshed_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
    SELECT v.name,
           COALESCE(c.relispopulated, false),
           CASE WHEN p.oldest_change_at IS NULL THEN 0
                ELSE GREATEST(0, floor(extract(epoch FROM clock_timestamp() - p.oldest_change_at) * 1000))::bigint
           END,
           p.pending_changes,
           p.oldest_change_at,
           s.data_as_of,
           s.last_refreshed_at
      FROM unnest(ARRAY['mv_entity_ancestors', 'mv_descendant_counts']) WITH ORDINALITY AS v(name, ord)
      LEFT JOIN pg_class c ON c.oid = to_regclass(v.name)
      LEFT JOIN hierarchy_view_state s ON s.view_name = v.name
      CROSS JOIN LATERAL hierarchy_pending_changes(v.name) p
     ORDER BY v.ord
  $fn$$q$, '__SCHEMA__', quote_ident(current_schema())); END $do$;

DO $do$ BEGIN EXECUTE replace($q$
  CREATE OR REPLACE FUNCTION refresh_hierarchy_views(
    p_force boolean DEFAULT false,
    p_views text[] DEFAULT NULL,
    p_trigger text DEFAULT 'sql')
    RETURNS TABLE (view_name text, status text, duration_ms double precision, rows bigint,
                   staleness_ms bigint, error_code text, error_message text)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = __SCHEMA__, pg_temp
  AS $fn$
  #variable_conflict use_column
  DECLARE
    c_all_views   constant text[] := ARRAY['mv_entity_ancestors', 'mv_descendant_counts'];
    v_views       text[];
    v_view        text;
    v_started     timestamptz;
    v_pending     bigint;
    v_oldest      timestamptz;
    v_staleness   bigint;
    v_populated   boolean;
    v_snapshot    pg_snapshot;
    v_as_of       timestamptz;
    v_rows        bigint;
    v_status      text;
    v_code        text;
    v_message     text;
    v_holder      integer;
    v_stop_status text;
    v_stop_reason text;
    v_locked      boolean := false;
  BEGIN
    IF p_trigger IS NULL OR p_trigger NOT IN ('schedule', 'change', 'manual', 'sql') THEN
      RAISE EXCEPTION 'unknown refresh trigger %', quote_nullable(p_trigger)
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'use one of schedule, change, manual, sql';
    END IF;
    IF p_views IS NOT NULL AND NOT (p_views <@ c_all_views) THEN
      RAISE EXCEPTION 'unknown view in %', p_views
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'views are mv_entity_ancestors and mv_descendant_counts';
    END IF;
    -- Keep the canonical order (ancestors first) whatever order the caller gave.
    SELECT array_agg(v ORDER BY ord) INTO v_views
      FROM unnest(c_all_views) WITH ORDINALITY AS t(v, ord)
     WHERE p_views IS NULL OR v = ANY (p_views);
    -- An empty list is a no-op: callers use it to have this function compiled in their session
    -- before arming a short statement_timeout.
    IF v_views IS NULL THEN
      RETURN;
    END IF;

    -- Every step that can be interrupted by statement_timeout or a cancel runs inside a
    -- BEGIN ... EXCEPTION block, so an interruption is recorded instead of aborting the call.
    BEGIN
      v_locked := pg_try_advisory_xact_lock(4107315530992118);
      IF NOT v_locked THEN
        SELECT l.pid INTO v_holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND l.classid = (4107315530992118 >> 32)::oid
           AND l.objid = (4107315530992118 & 4294967295)::oid
         LIMIT 1;
        v_stop_status := 'skipped';
        v_stop_reason := 'another refresh is running' ||
          COALESCE(' (backend pid ' || v_holder || ')', '') || '; not queued behind it';
      END IF;
    EXCEPTION WHEN query_canceled THEN
      GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
      v_locked := false;
      v_stop_status := CASE WHEN v_message LIKE '%statement timeout%' THEN 'failed' ELSE 'cancelled' END;
      v_stop_reason := v_message || ' (before the refresh started)';
    END;

    FOREACH v_view IN ARRAY v_views LOOP
      v_started := clock_timestamp();
      v_rows := NULL; v_code := NULL; v_message := NULL; v_as_of := NULL;
      v_pending := NULL; v_staleness := NULL;

      IF v_stop_status IS NOT NULL THEN
        v_status := v_stop_status;
        v_message := v_stop_reason;
        v_code := CASE WHEN v_stop_status IN ('failed', 'cancelled') AND v_stop_reason NOT LIKE 'not attempted%'
                       THEN '57014' END;
      ELSE
        BEGIN
          SELECT p.pending_changes, p.oldest_change_at INTO v_pending, v_oldest
            FROM hierarchy_pending_changes(v_view) p;
          v_staleness := CASE WHEN v_oldest IS NULL THEN 0
            ELSE GREATEST(0, floor(extract(epoch FROM v_started - v_oldest) * 1000))::bigint END;
          SELECT c.relispopulated INTO v_populated FROM pg_class c WHERE c.oid = to_regclass(v_view);
          IF v_populated IS NULL THEN
            v_status := 'failed';
            v_code := '42P01';
            v_message := format('materialized view %s does not exist; run hierarchy-db repair', v_view);
          ELSIF v_populated AND v_pending = 0 AND NOT p_force THEN
            v_status := 'skipped';
            v_message := 'no pending changes';
          ELSE
            v_snapshot := pg_current_snapshot();
            v_as_of := clock_timestamp();
            IF v_populated THEN
              EXECUTE format('REFRESH MATERIALIZED VIEW CONCURRENTLY %I', v_view);
            ELSE
              -- CONCURRENTLY needs a populated view: the first refresh is a plain one.
              EXECUTE format('REFRESH MATERIALIZED VIEW %I', v_view);
            END IF;
            EXECUTE format('SELECT count(*) FROM %I', v_view) INTO v_rows;
            INSERT INTO hierarchy_view_state AS s (view_name, snapshot, data_as_of, last_refreshed_at)
            VALUES (v_view, v_snapshot, v_as_of, clock_timestamp())
            ON CONFLICT (view_name) DO UPDATE
              SET snapshot = EXCLUDED.snapshot, data_as_of = EXCLUDED.data_as_of,
                  last_refreshed_at = EXCLUDED.last_refreshed_at;
            v_status := 'refreshed';
          END IF;
        EXCEPTION
          WHEN query_canceled THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            v_rows := NULL; v_as_of := NULL;
            IF v_message LIKE '%statement timeout%' THEN
              v_status := 'failed';
              v_stop_status := 'skipped';
              v_stop_reason := format('not attempted: statement timeout reached while refreshing %s', v_view);
            ELSE
              v_status := 'cancelled';
              v_stop_status := 'cancelled';
              v_stop_reason := format('not attempted: cancelled while refreshing %s', v_view);
            END IF;
          WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_code = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT;
            v_rows := NULL; v_as_of := NULL;
            v_status := 'failed';
        END;
      END IF;

      INSERT INTO mv_refresh_audit (view_name, trigger, status, started_at, finished_at, duration_ms,
                                    rows, staleness_ms, pending_changes, data_as_of, error_code,
                                    error_message, application_name, backend_pid)
      VALUES (v_view, p_trigger, v_status, v_started, clock_timestamp(),
              round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision,
              v_rows, v_staleness, v_pending, v_as_of, v_code, v_message,
              current_setting('application_name', true), pg_backend_pid());

      view_name := v_view;
      status := v_status;
      duration_ms := round((extract(epoch FROM clock_timestamp() - v_started) * 1000)::numeric, 3)::double precision;
      rows := v_rows;
      staleness_ms := v_staleness;
      error_code := v_code;
      error_message := v_message;
      RETURN NEXT;
    END LOOP;

    IF v_locked THEN
      BEGIN
        -- Changes every view has reflected are no longer needed.
        DELETE FROM hierarchy_changes c
         WHERE (SELECT count(*) FROM hierarchy_view_state s
                 WHERE s.view_name = ANY (c_all_views) AND s.snapshot IS NOT NULL
                   AND pg_visible_in_snapshot(c.xid, s.snapshot)) = cardinality(c_all_views);
        -- Audit retention: 30 days unless ALTER DATABASE ... SET hierarchy_db.audit_retention = '7 days'.
        DELETE FROM mv_refresh_audit a
         WHERE a.started_at < now() - COALESCE(NULLIF(current_setting('hierarchy_db.audit_retention', true), ''), '30 days')::interval;
      EXCEPTION WHEN query_canceled THEN
        NULL; -- housekeeping only: the next call does it
      END;
    END IF;
  END
  $fn$$q$, '__SCHEMA__', quote_ident(current_schema())); END $do$;

REVOKE ALL ON FUNCTION refresh_hierarchy_views(boolean, text[], text) FROM PUBLIC;

DO $do$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND (rolsuper OR rolcreaterole)) THEN
    -- Roles are cluster-wide: another database may have created them, possibly right now.
    BEGIN
      CREATE ROLE hierarchy_reader NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
      CREATE ROLE hierarchy_refresher NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  ELSIF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname IN ('hierarchy_reader', 'hierarchy_refresher')) THEN
    RAISE NOTICE 'hierarchy-db: role % may not create roles; skipping hierarchy_reader and hierarchy_refresher', current_user;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_reader') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_reader', current_schema());
    GRANT SELECT ON mv_entity_ancestors, mv_descendant_counts TO hierarchy_reader;
    GRANT EXECUTE ON FUNCTION hierarchy_view_status() TO hierarchy_reader;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hierarchy_refresher') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO hierarchy_refresher', current_schema());
    GRANT EXECUTE ON FUNCTION refresh_hierarchy_views(boolean, text[], text) TO hierarchy_refresher;
  END IF;
END $do$;
