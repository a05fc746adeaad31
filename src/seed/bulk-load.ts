import type pg from 'pg';

/** One secondary index or constraint of `entities`, dropped for a bulk load and rebuilt after. */
export interface SuspendedObject {
  kind: 'index' | 'unique' | 'foreign-key';
  name: string;
  /** The statement that recreates it exactly (from `pg_get_indexdef` / `pg_get_constraintdef`). */
  createSql: string;
}

/**
 * Whether the session may drop and recreate the indexes and constraints of `entities`: only its
 * owner (or a member of the owning role) may `ALTER TABLE`.
 */
export async function canBulkLoad(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ owner: boolean }>(
    `SELECT pg_has_role(c.relowner, 'USAGE') AS owner FROM pg_class c WHERE c.oid = 'entities'::regclass`,
  );
  return rows[0]?.owner === true;
}

/**
 * Drops every secondary index and constraint of `entities` that makes row-at-a-time inserts
 * expensive — the GiST indexes, the parent-path btree, the unique path constraint and the
 * parent foreign key (a per-row RI check) — and returns how to rebuild them, in dependency
 * order: unique constraints and indexes first, then the foreign keys, which one join validates.
 * This is what `pg_restore` does: building an index once over sorted data is several times
 * cheaper than maintaining it row by row.
 *
 * The primary key stays (the load joins children to parents by id). A unique constraint that a
 * foreign key of another table depends on stays too: dropping it would mean touching that table.
 * Must run inside the caller's transaction, with `entities` locked ACCESS EXCLUSIVE: a failure
 * anywhere rolls every drop back.
 */
export async function suspendSecondaryIndexes(client: pg.ClientBase): Promise<SuspendedObject[]> {
  const foreignKeys = await client.query<{ name: string; def: string }>(
    `SELECT conname AS name, pg_get_constraintdef(oid) AS def
       FROM pg_constraint
      WHERE conrelid = 'entities'::regclass AND contype = 'f'
      ORDER BY conname`,
  );
  const uniques = await client.query<{ name: string; def: string }>(
    `SELECT u.conname AS name, pg_get_constraintdef(u.oid) AS def
       FROM pg_constraint u
      WHERE u.conrelid = 'entities'::regclass AND u.contype = 'u'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint f
                         WHERE f.contype = 'f' AND f.confrelid = 'entities'::regclass
                           AND f.conrelid <> 'entities'::regclass AND f.conindid = u.conindid)
      ORDER BY u.conname`,
  );
  // Indexes that back no constraint (the primary key and kept unique constraints back one).
  const indexes = await client.query<{ name: string; def: string }>(
    `SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i
      WHERE i.indrelid = 'entities'::regclass
        AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                                                      AND c.conrelid = 'entities'::regclass)
      ORDER BY 1`,
  );

  const suspended: SuspendedObject[] = [
    ...uniques.rows.map((r) => ({
      kind: 'unique' as const,
      name: r.name,
      createSql: `ALTER TABLE entities ADD CONSTRAINT ${quoteIdent(r.name)} ${r.def}`,
    })),
    ...indexes.rows.map((r) => ({ kind: 'index' as const, name: r.name, createSql: r.def })),
    ...foreignKeys.rows.map((r) => ({
      kind: 'foreign-key' as const,
      name: r.name,
      createSql: `ALTER TABLE entities ADD CONSTRAINT ${quoteIdent(r.name)} ${r.def}`,
    })),
  ];

  // Foreign keys first: the self-referencing one depends on the unique path constraint.
  for (const fk of foreignKeys.rows) {
    await client.query(`ALTER TABLE entities DROP CONSTRAINT ${quoteIdent(fk.name)}`);
  }
  for (const unique of uniques.rows) {
    await client.query(`ALTER TABLE entities DROP CONSTRAINT ${quoteIdent(unique.name)}`);
  }
  for (const index of indexes.rows) {
    // regclass::text is already quoted (and schema-qualified when off the search_path).
    await client.query(`DROP INDEX ${index.name}`);
  }
  return suspended;
}

/** PostgreSQL identifier quoting, for names read back from the catalog. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
