import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, createPool } from '../../src/db/pool.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// The project's pools and clients parse bigint and numeric as numbers through their own `types`
// option; a plain pg client in the same process keeps pg's defaults (strings).
describe('type parsers', () => {
  let db: TestDatabase;
  const sql = `SELECT 9007199254740991::int8 AS big, 1.25::numeric AS num, 7::int4 AS small,
    '2024-01-02T03:04:05Z'::timestamptz AS at`;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('parses bigint and numeric as numbers in the project pools and clients', async () => {
    const connection = { target: { url: db.url, source: 'flag' as const, display: 'test' } };
    const pool = createPool(connection);
    const client = createClient(connection);
    try {
      await client.connect();
      for (const rows of [(await pool.query(sql)).rows, (await client.query(sql)).rows]) {
        expect(rows[0]).toEqual({
          big: 9007199254740991,
          num: 1.25,
          small: 7,
          at: new Date('2024-01-02T03:04:05Z'),
        });
      }
    } finally {
      await client.end();
      await pool.end();
    }
  });

  it('leaves the global parsers alone: a plain pg client gets strings', async () => {
    const plain = new pg.Client(db.url);
    await plain.connect();
    try {
      const { rows } = await plain.query(sql);
      expect(rows[0]).toMatchObject({ big: '9007199254740991', num: '1.25', small: 7 });
    } finally {
      await plain.end();
    }
  });
});
