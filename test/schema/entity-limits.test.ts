import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config-error.ts';
import { ENTITY_LIMITS } from '../../src/db/entity-limits.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { MIGRATIONS_DIR } from '../../src/migrate/migration-files.ts';
import { resolveSeedOptions, seedHierarchy } from '../../src/seed/seed-hierarchy.ts';
import { verifySchema } from '../../src/verify/schema-verifier.ts';
import { runCli } from '../helpers/cli.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// The limits on a path (migrations/0006_entity_limits.sql; docs/semantics.md, "Limits"): a path
// far deeper or longer than them makes the GiST path indexes degenerate for every session (a
// 254-level chain ran 80 s in one INSERT and grew an index to 1.8 GB), so the database rejects
// it before it reaches an index, in milliseconds, naming the limit.

/** One INSERT of a chain `depth` levels deep: every ancestor, then the tip. */
async function insertChain(db: TestDatabase, depth: number, label: (level: number) => string) {
  await db.client.query(
    `INSERT INTO entities (name, path)
     SELECT 'n' || d, (SELECT string_agg(lab.l, '.' ORDER BY lab.i)
                         FROM unnest($1::text[]) WITH ORDINALITY AS lab(l, i) WHERE lab.i <= d)::ltree
       FROM generate_series(1, cardinality($1::text[])) AS d`,
    [Array.from({ length: depth }, (_, i) => label(i + 1))],
  );
}

async function failure(promise: Promise<unknown>): Promise<{ constraint?: string; code?: string }> {
  return promise.then(
    () => ({}),
    (error: { constraint?: string; code?: string }) => error,
  );
}

describe('path limits on entities', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db.client.query('TRUNCATE entities RESTART IDENTITY');
  });

  it('rejects a 300-level path in one statement within milliseconds, naming the depth limit', async () => {
    const started = performance.now();
    const error = await failure(insertChain(db, 300, (i) => `l${i}`));
    const elapsedMs = performance.now() - started;
    expect(error).toMatchObject({ code: '23514', constraint: 'entities_path_depth_limit' });
    // Unlimited, this statement ran 40-100 s; a loaded CI machine still answers in well under 5 s.
    expect(elapsedMs).toBeLessThan(5_000);
    const { rows } = await db.client.query(
      `SELECT count(*)::int AS n,
              pg_relation_size('entities_depth_path_gist') < 1024 * 1024 AS small_index
         FROM entities`,
    );
    expect(rows).toEqual([{ n: 0, small_index: true }]);
  });

  it(`accepts exactly ${ENTITY_LIMITS.maxDepth} levels and rejects one more, also by a subtree move`, async () => {
    await insertChain(db, ENTITY_LIMITS.maxDepth, (i) => `l${i}`);
    const deepest = await db.client.query('SELECT max(path_depth) AS depth FROM entities');
    expect(deepest.rows[0].depth).toBe(ENTITY_LIMITS.maxDepth);
    const tip = (
      await db.client.query<{ path: string }>(
        'SELECT path::text FROM entities ORDER BY path_depth DESC LIMIT 1',
      )
    ).rows[0]!.path;
    expect(
      await failure(
        db.client.query(`INSERT INTO entities (name, path) VALUES ('x', $1::ltree)`, [`${tip}.x`]),
      ),
    ).toMatchObject({ constraint: 'entities_path_depth_limit' });
    // Moving a 2-level subtree below the tip's parent would make it 101 levels deep.
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('r', 'r'), ('s', 'r.s')`);
    const parent = tip.split('.').slice(0, -1).join('.');
    expect(
      await failure(
        db.client.query(
          `UPDATE entities SET path = $1::ltree || subpath(path, 0) WHERE path <@ 'r'`,
          [parent],
        ),
      ),
    ).toMatchObject({ constraint: 'entities_path_depth_limit' });
    const moved = await db.client.query(
      `SELECT count(*)::int AS n FROM entities WHERE path <@ 'r'`,
    );
    expect(moved.rows[0].n).toBe(2);
  });

  it(`accepts a path of ${ENTITY_LIMITS.maxPathBytes} bytes and rejects ${ENTITY_LIMITS.maxPathBytes + 1}`, async () => {
    // 7 labels of 64 characters and dots: 7 * 65 = 455 bytes; the 8th label makes up the rest.
    const path = (total: number) => (i: number) =>
      i < 8 ? String(i).repeat(64) : 'x'.repeat(total - 7 * 65);
    await insertChain(db, 8, path(ENTITY_LIMITS.maxPathBytes));
    const longest = await db.client.query(
      'SELECT max(octet_length(path::text))::int AS bytes FROM entities',
    );
    expect(longest.rows[0].bytes).toBe(ENTITY_LIMITS.maxPathBytes);
    await db.client.query('TRUNCATE entities');
    expect(await failure(insertChain(db, 8, path(ENTITY_LIMITS.maxPathBytes + 1)))).toMatchObject({
      constraint: 'entities_path_length_limit',
    });
  });

  it(`accepts a label of ${ENTITY_LIMITS.maxLabelChars} characters and rejects ${ENTITY_LIMITS.maxLabelChars + 1}`, async () => {
    await db.client.query(`INSERT INTO entities (name, path) VALUES ('a', $1::ltree)`, [
      'a'.repeat(ENTITY_LIMITS.maxLabelChars),
    ]);
    expect(
      await failure(
        db.client.query(`INSERT INTO entities (name, path) VALUES ('b', $1::ltree)`, [
          `${'a'.repeat(ENTITY_LIMITS.maxLabelChars)}.${'b'.repeat(ENTITY_LIMITS.maxLabelChars + 1)}`,
        ]),
      ),
    ).toMatchObject({ constraint: 'entities_path_label_length_limit' });
  });

  it('verify names a missing or unvalidated limit', async () => {
    const report = async () =>
      (
        await verifySchema({
          connection: { target: { url: db.url, source: 'flag', display: 'test' } },
          logger: createLogger('warn'),
        })
      ).checks.find((c) => c.name === 'table entities constraints');
    expect(await report()).toMatchObject({ ok: true });
    await db.client.query('ALTER TABLE entities DROP CONSTRAINT entities_path_depth_limit');
    try {
      expect((await report())?.detail).toContain('entities_path_depth_limit missing');
      await db.client.query(
        'ALTER TABLE entities ADD CONSTRAINT entities_path_depth_limit CHECK (nlevel(path) <= 100) NOT VALID',
      );
      expect((await report())?.detail).toContain('entities_path_depth_limit is NOT VALID');
    } finally {
      await db.client.query(
        'ALTER TABLE entities DROP CONSTRAINT IF EXISTS entities_path_depth_limit',
      );
      await db.client.query(
        'ALTER TABLE entities ADD CONSTRAINT entities_path_depth_limit CHECK (nlevel(path) <= 100)',
      );
    }
  });

  it('seed refuses options whose paths would exceed the limits, and stays within them otherwise', async () => {
    // 100 levels of 100 entities each: labels n0 .. n9999, paths of about 600 bytes.
    expect(() => resolveSeedOptions({ entities: 10_000, roots: 100, fanout: 1 })).toThrow(
      ConfigError,
    );
    expect(() => resolveSeedOptions({ entities: 10_000, roots: 100, fanout: 1 })).toThrow(
      /paths of up to \d+ bytes .*the limit is 512/,
    );
    // The deepest hierarchy seed allows, with the longest labels it makes at that depth.
    const result = await seedHierarchy(db.client, {
      entities: 1_000,
      roots: 10,
      fanout: 1,
      randomSeed: 1,
      replace: true,
    });
    expect(result.depth).toBe(ENTITY_LIMITS.maxDepth);
  });
});

describe('migrating a database whose paths exceed the limits', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('fails with what to do and changes nothing; applies once the paths are fixed', async () => {
    const db = await createTestDatabase({ migrated: false });
    cleanups.push(() => db.drop());
    const before = await mkdtemp(join(tmpdir(), 'hdb-limits-'));
    cleanups.push(() => rm(before, { recursive: true, force: true }));
    await cp(MIGRATIONS_DIR, before, {
      recursive: true,
      filter: (source) => !/000[67]_/.test(source),
    });
    const migrate = (dir: string) =>
      runCli(['migrate', 'up', '--migrations-dir', dir, '--database-url', db.url]);
    const first = await migrate(before);
    expect(first.code, first.stderr).toBe(0);
    await insertChain(db, 120, (i) => `l${i}`);

    const refused = await migrate(MIGRATIONS_DIR);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('20 entities exceed the path limits');
    expect(refused.stderr).toContain('shorten or move them, then migrate again');
    expect(refused.stderr).toContain('120 levels');
    const constraints = async () =>
      (
        await db.client.query<{ conname: string; convalidated: boolean }>(
          `SELECT conname, convalidated FROM pg_constraint
            WHERE conrelid = 'entities'::regclass AND conname LIKE 'entities_path_%_limit' ORDER BY 1`,
        )
      ).rows;
    expect(await constraints()).toEqual([]);

    await db.client.query('DELETE FROM entities WHERE path_depth > 100');
    const applied = await migrate(MIGRATIONS_DIR);
    expect(applied.code, applied.stderr).toBe(0);
    expect(await constraints()).toEqual([
      { conname: 'entities_path_depth_limit', convalidated: true },
      { conname: 'entities_path_label_length_limit', convalidated: true },
      { conname: 'entities_path_length_limit', convalidated: true },
    ]);
  });
});
