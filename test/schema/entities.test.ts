import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// Integrity the database enforces on `entities`: bad input is rejected with a clear
// error and changes nothing.
describe('entities integrity', () => {
  let db: TestDatabase;
  const snapshot = async () =>
    (
      await db.client.query(
        'SELECT id, name, path::text, path_depth, confidence_score, is_active FROM entities ORDER BY id',
      )
    ).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.client.query('TRUNCATE entities RESTART IDENTITY');
    await db.client.query(
      `INSERT INTO entities (name, path) VALUES ('a', 'a'), ('b', 'a.b'), ('c', 'a.b.c'), ('x', 'x')`,
    );
  });

  it.each([
    [
      'an invalid ltree label',
      `INSERT INTO entities (name, path) VALUES ('bad', 'a.b c')`,
      /ltree syntax error|syntax error/,
    ],
    [
      'an orphan',
      `INSERT INTO entities (name, path) VALUES ('orphan', 'nope.child')`,
      /entities_parent_fkey/,
    ],
    [
      'a score of 1.5',
      `INSERT INTO entities (name, path, confidence_score) VALUES ('s', 'a.s', 1.5)`,
      /entities_confidence_score_range/,
    ],
    [
      'a negative score',
      `INSERT INTO entities (name, path, confidence_score) VALUES ('s', 'a.s', -0.1)`,
      /entities_confidence_score_range/,
    ],
    [
      'an explicit path_depth',
      `INSERT INTO entities (name, path, path_depth) VALUES ('d', 'a.d', 7)`,
      /generated column|path_depth/,
    ],
    [
      'a duplicate path',
      `INSERT INTO entities (name, path) VALUES ('dup', 'a.b')`,
      /entities_path_key/,
    ],
    [
      'deleting a parent with children',
      `DELETE FROM entities WHERE path = 'a.b'`,
      /entities_parent_fkey/,
    ],
    [
      'moving a parent away from its children',
      `UPDATE entities SET path = 'x.b' WHERE path = 'a.b'`,
      /entities_parent_fkey/,
    ],
    [
      'an empty name',
      `INSERT INTO entities (name, path) VALUES ('', 'a.e')`,
      /entities_name_not_empty/,
    ],
  ])('rejects %s and changes nothing', async (_label, statement, message) => {
    const before = await snapshot();
    await expect(db.client.query(statement)).rejects.toThrow(message);
    expect(await snapshot()).toEqual(before);
  });

  it('moves a whole subtree in one UPDATE and keeps path_depth equal to nlevel(path)', async () => {
    await db.client.query(`UPDATE entities SET path = 'x' || subpath(path, 1) WHERE path <@ 'a.b'`);
    const rows = await snapshot();
    expect(rows.map((r) => [r.path, r.path_depth])).toEqual([
      ['a', 1],
      ['x.b', 2],
      ['x.b.c', 3],
      ['x', 1],
    ]);
  });

  it('sets updated_at on update', async () => {
    const before = await db.client.query(`SELECT updated_at FROM entities WHERE path = 'x'`);
    await new Promise((r) => setTimeout(r, 20));
    await db.client.query(`UPDATE entities SET name = 'x2' WHERE path = 'x'`);
    const after = await db.client.query(`SELECT updated_at FROM entities WHERE path = 'x'`);
    expect(after.rows[0].updated_at.getTime()).toBeGreaterThan(before.rows[0].updated_at.getTime());
  });

  it('has the required indexes, all valid', async () => {
    const { rows } = await db.client.query(
      `SELECT c.relname, pg_get_indexdef(i.indexrelid) AS def, i.indisvalid
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'entities'::regclass ORDER BY 1`,
    );
    const defs = rows.map((r) => r.def).join('\n');
    expect(defs).toMatch(/USING gist \(path\)/);
    expect(defs).toMatch(/USING gist \(path_depth, path\)/);
    expect(defs).toMatch(/UNIQUE INDEX entities_path_key ON public\.entities USING btree \(path\)/);
    expect(rows.every((r) => r.indisvalid)).toBe(true);
  });
});
