import { Kysely, PostgresDialect } from 'kysely';
import type pg from 'pg';
import { isConnectionFailure, toConnectionError } from './connection-error.ts';
import { type ConnectionOptions, createPool } from './pool.ts';
import type { Database } from './schema.ts';

/** A pool and the kysely instance on top of it, closed together. */
export interface DatabaseHandle {
  pool: pg.Pool;
  db: Kysely<Database>;
  /** Checks the database answers; throws `ConnectionError` naming host:port if not. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Opens a pool with the project's connection settings and a typed kysely instance over it. */
export function openDatabase(options: ConnectionOptions): DatabaseHandle {
  const pool = createPool(options);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return {
    pool,
    db,
    ping: async () => {
      try {
        await pool.query('SELECT 1');
      } catch (error) {
        if (isConnectionFailure(error)) throw toConnectionError(error, options.target.display);
        throw error;
      }
    },
    close: async () => {
      // kysely ends the pool only if it ever used it (its driver initialises lazily).
      await db.destroy();
      if (!pool.ended) await pool.end();
    },
  };
}
