import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.ts';

// The cache-invalidation feed of incremental refreshes (sql/functions/refresh_hierarchy_views.sql):
// one NOTIFY on hierarchy_views_refreshed per refresh that changed rows, naming the changed
// entities, sent by the refresher; none when nothing changed.

const CHANNEL = 'hierarchy_views_refreshed';

describe('incremental refresh notifications', () => {
  let db: TestDatabase;
  let listener: pg.Client;
  const payloads: unknown[] = [];
  beforeAll(async () => {
    db = await createTestDatabase();
    await db.client.query(
      `INSERT INTO entities (name, path, is_active) VALUES
         ('a', 'a', true), ('b', 'a.b', true), ('c', 'a.b.c', true), ('d', 'a.b.d', false), ('x', 'x', true)`,
    );
    await db.client.query(`CALL hierarchy_set_view_strategy('incremental')`);
    listener = new pg.Client(db.url);
    listener.on('error', () => {});
    await listener.connect();
    listener.on('notification', (n) => {
      if (n.channel === CHANNEL) payloads.push(JSON.parse(n.payload ?? 'null'));
    });
    await listener.query(`LISTEN ${CHANNEL}`);
  });
  afterAll(async () => {
    await listener?.end();
    await db?.drop();
  });

  /** Waits for the notifications of a refresh: a marker NOTIFY sent after it arrives after them. */
  async function drain(): Promise<unknown[]> {
    const marker = `marker-${Math.random()}`;
    await db.client.query(`SELECT pg_notify($1, $2)`, [CHANNEL, JSON.stringify({ marker })]);
    const deadline = Date.now() + 10_000;
    while (!payloads.some((p) => (p as { marker?: string }).marker === marker)) {
      if (Date.now() > deadline) throw new Error('no marker notification');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const out = payloads.splice(0).filter((p) => (p as { marker?: string }).marker === undefined);
    return out;
  }

  async function ids(...paths: string[]): Promise<number[]> {
    const { rows } = await db.client.query<{ id: string }>(
      'SELECT id FROM entities WHERE path::text = ANY ($1) ORDER BY id',
      [paths],
    );
    return rows.map((r) => Number(r.id));
  }

  it('names the entities whose rows changed after a rename', async () => {
    await drain();
    await db.client.query(`UPDATE entities SET name = 'b2' WHERE path = 'a.b'`);
    const { rows } = await db.client.query(
      'SELECT view_name, method, rows_changed::int FROM refresh_hierarchy_views()',
    );
    // Ancestors: b and its active descendant c (their breadcrumbs hold the name); counts: b.
    expect(rows).toEqual([
      { view_name: 'mv_entity_ancestors', method: 'incremental', rows_changed: 2 },
      { view_name: 'mv_descendant_counts', method: 'incremental', rows_changed: 1 },
    ]);
    expect(await drain()).toEqual([
      {
        views: ['mv_entity_ancestors', 'mv_descendant_counts'],
        rows_changed: 3,
        entity_ids: await ids('a.b', 'a.b.c'),
        all: false,
      },
    ]);
  });

  it('sends nothing when a refresh changed no row', async () => {
    await drain();
    await db.client.query(`UPDATE entities SET updated_at = now() WHERE path = 'x'`);
    const { rows } = await db.client.query(
      'SELECT view_name, status, method, rows_changed::int FROM refresh_hierarchy_views()',
    );
    expect(await drain()).toEqual([]);
    // A write that changes no shown column is applied as an empty incremental change.
    expect(rows).toEqual([
      {
        view_name: 'mv_entity_ancestors',
        status: 'refreshed',
        method: 'incremental',
        rows_changed: 0,
      },
      {
        view_name: 'mv_descendant_counts',
        status: 'refreshed',
        method: 'incremental',
        rows_changed: 0,
      },
    ]);
  });
});
