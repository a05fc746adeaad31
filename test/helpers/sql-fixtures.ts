import type pg from 'pg';

/**
 * A bulk hierarchy in three set-based statements (parents before children, so the parent FK
 * holds): `roots` roots, `children` per root, `grandchildren` per child.
 */
export async function insertBulkHierarchy(
  client: pg.Client,
  shape: { roots: number; children: number; grandchildren: number },
): Promise<number> {
  await client.query(
    `INSERT INTO entities (name, path)
     SELECT 'root ' || r, ('r' || r)::ltree FROM generate_series(1, $1) r`,
    [shape.roots],
  );
  await client.query(
    `INSERT INTO entities (name, path, is_active)
     SELECT 'child ' || r || '.' || c, ('r' || r || '.c' || c)::ltree, (r + c) % 7 <> 0
       FROM generate_series(1, $1) r, generate_series(1, $2) c`,
    [shape.roots, shape.children],
  );
  await client.query(
    `INSERT INTO entities (name, path, is_active)
     SELECT 'leaf ' || r || '.' || c || '.' || g, ('r' || r || '.c' || c || '.g' || g)::ltree, (r + c + g) % 9 <> 0
       FROM generate_series(1, $1) r, generate_series(1, $2) c, generate_series(1, $3) g`,
    [shape.roots, shape.children, shape.grandchildren],
  );
  return shape.roots * (1 + shape.children * (1 + shape.grandchildren));
}

/** Audit rows in insertion order, in a shape easy to compare. */
export async function auditRows(client: pg.Client) {
  const { rows } = await client.query(
    `SELECT id::int, view_name, trigger, status, started_at, finished_at, duration_ms, rows::int,
            staleness_ms::int, pending_changes::int, data_as_of, error_code, error_message, application_name, backend_pid
       FROM mv_refresh_audit ORDER BY id`,
  );
  return rows;
}
