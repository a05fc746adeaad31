import { runner } from 'node-pg-migrate';
import type pg from 'pg';
import { connectOrThrow } from '../db/connect.ts';
import { ConnectionError } from '../db/connection-error.ts';
import { type ConnectionOptions, createClient } from '../db/pool.ts';
import type { Logger } from '../logging/logger.ts';
import { acquireSchemaLock } from './advisory-lock.ts';
import { listMigrationFiles, MIGRATIONS_DIR, type MigrationFile } from './migration-files.ts';
import { droppedTables, migrationSql } from './migration-sql.ts';
import { isSameMigration, RELEASED_CHECKSUMS } from './released-checksums.ts';

/** node-pg-migrate's bookkeeping table. */
export const MIGRATIONS_TABLE = 'hierarchy_db_migrations';
/** Our table of file checksums, one row per applied migration. */
export const CHECKSUMS_TABLE = 'hierarchy_db_migration_checksums';

/** One applied migration. */
export interface AppliedMigration {
  name: string;
  run_on: string;
}

/** What `migrate status` reports. */
export interface MigrationStatus {
  applied: AppliedMigration[];
  pending: string[];
  /** Applied migrations whose file changed since they were applied. */
  modified: string[];
  /** Applied migrations whose file no longer exists. */
  missing: string[];
}

/** An applied migration's file changed: the schema may no longer match the code. */
export class MigrationModifiedError extends Error {
  override readonly name = 'MigrationModifiedError';
  constructor(readonly files: string[]) {
    super(
      `applied migration${files.length > 1 ? 's' : ''} changed since applied: ${files.join(', ')}; ` +
        'restore the released file(s) and put the change in a new migration (`hierarchy-db migrate create NAME`)',
    );
  }
}

/**
 * Tables whose rows nothing can rebuild: the hierarchy itself and the refresh audit. Everything
 * else a down migration drops is derived (views, change logs, state) and is rebuilt by `up`.
 */
export const DATA_TABLES: readonly string[] = ['entities', 'mv_refresh_audit'];

/** A table holding rows that a `down` would drop. */
export interface DataAtRisk {
  /** The migration whose down section drops it. */
  migration: string;
  table: string;
  rows: number;
}

/**
 * Reverting would drop tables that hold rows (see {@link DATA_TABLES}) and `confirmDataLoss`
 * was not given. Nothing was reverted.
 */
export class DataLossError extends Error {
  override readonly name = 'DataLossError';
  constructor(readonly tables: DataAtRisk[]) {
    super(
      `reverting would drop ${formatDataAtRisk(tables)}; nothing was reverted: back the data up, then revert with confirmDataLoss`,
    );
  }
}

/** `entities (3 rows, dropped by 0001_entities), ...` for messages. */
export function formatDataAtRisk(tables: DataAtRisk[]): string {
  return tables
    .map((t) => `${t.table} (${t.rows} row${t.rows === 1 ? '' : 's'}, dropped by ${t.migration})`)
    .join(', ');
}

/** Options of {@link Migrator.down}. */
export interface DownOptions {
  /**
   * Revert even when a migration's down section drops a table of {@link DATA_TABLES} that holds
   * rows. Default false: such a revert throws {@link DataLossError} before anything runs.
   */
  confirmDataLoss?: boolean;
}

/** A migration failed to apply or revert. */
export class MigrationFailedError extends Error {
  override readonly name = 'MigrationFailedError';
}

/** Options for {@link Migrator}. */
export interface MigratorOptions {
  connection: ConnectionOptions;
  logger: Logger;
  /** Directory of migration files. Default: the project's `migrations/`. */
  dir?: string;
  /** How long to wait for the schema lock. Default 300 000 ms. */
  lockWaitMs?: number;
}

/** The result of `up` or `down`. */
export interface MigrationRun {
  /** Names applied (up) or reverted (down), in order. */
  ran: string[];
  /** For a dry run: the SQL each pending migration would execute. */
  plan?: { name: string; sql: string }[];
}

/**
 * Applies and reverts the versioned migrations through node-pg-migrate's runner, adding what it
 * lacks: a lock that is safe next to `CREATE INDEX CONCURRENTLY`, tamper detection by checksum,
 * and a dry run that writes nothing.
 */
export class Migrator {
  readonly #options: MigratorOptions;
  readonly #dir: string;

  constructor(options: MigratorOptions) {
    this.#options = options;
    this.#dir = options.dir ?? MIGRATIONS_DIR;
  }

  /** Applied, pending, modified and missing migrations. Read-only. */
  async status(): Promise<MigrationStatus> {
    return this.#withClient((client) => this.#status(client));
  }

  /**
   * Applies every pending migration. Refuses when an applied migration was modified.
   * With `dryRun`, prints nothing to the database: it reads the state in a read-only
   * transaction and returns the SQL that would run.
   */
  async up(options: { dryRun?: boolean } = {}): Promise<MigrationRun> {
    if (options.dryRun) return this.#withClient((client) => this.#plan(client));
    return this.#withSchemaLock(async (client) => {
      const before = await this.#status(client);
      if (before.modified.length > 0) throw new MigrationModifiedError(before.modified);
      if (before.missing.length > 0) {
        throw new MigrationFailedError(
          `applied migration file(s) missing from ${this.#dir}: ${before.missing.join(', ')}; deploy the release that contains them`,
        );
      }
      if (before.pending.length === 0) {
        this.#options.logger.info({ event: 'migrate.up', applied: 0 }, 'schema is up to date');
        await this.#recordChecksums(client);
        return { ran: [] };
      }
      const ran = await this.#run('up', Number.POSITIVE_INFINITY);
      await this.#recordChecksums(client);
      return { ran };
    });
  }

  /**
   * Reverts the last `count` migrations (default 1), or all of them with `Infinity`. Refuses
   * with {@link DataLossError}, reverting nothing, when one of them drops a table that holds rows
   * (see {@link DATA_TABLES}) and `options.confirmDataLoss` is not set.
   */
  async down(count = 1, options: DownOptions = {}): Promise<MigrationRun> {
    return this.#withSchemaLock(async (client) => {
      const before = await this.#status(client);
      if (before.applied.length === 0) return { ran: [] };
      if (!options.confirmDataLoss) {
        // The same migrations node-pg-migrate reverts: the last `count` in applied order.
        const reverting = before.applied.slice(-count).map((m) => m.name);
        const atRisk = await this.#dataAtRisk(client, reverting);
        if (atRisk.length > 0) throw new DataLossError(atRisk);
      }
      const ran = await this.#run('down', count);
      // Forget checksums of migrations no longer applied.
      await client.query(`DELETE FROM ${CHECKSUMS_TABLE} WHERE NOT (name = ANY ($1::text[]))`, [
        (await this.#applied(client)).map((m) => m.name),
      ]);
      return { ran };
    });
  }

  async #run(direction: 'up' | 'down', count: number): Promise<string[]> {
    const { logger } = this.#options;
    const log = (level: 'info' | 'warn' | 'error') => (msg: string) => {
      const text = msg.trim();
      if (text) logger[level]({ event: 'migrate.runner' }, text);
    };
    // Our client, not one node-pg-migrate would make from a URL: it closes on a failed connect
    // and a stopping CLI can cancel it (src/db/tracked-client.ts).
    const client = createClient({
      ...this.#options.connection,
      applicationName: 'hierarchy-db/migrate',
    });
    try {
      await connectOrThrow(client, this.#options.connection.target);
      const schema = this.#options.connection.schema;
      const result = await runner({
        dbClient: client,
        // Without a schema node-pg-migrate keeps its table in public whatever the search_path;
        // with one, the table, the migrations' objects and our reads all live in it.
        ...(schema !== undefined
          ? { schema, migrationsSchema: schema, createSchema: direction === 'up' }
          : {}),
        dir: this.#dir,
        migrationsTable: MIGRATIONS_TABLE,
        direction,
        count,
        checkOrder: true,
        // Our own lock is held on a separate, idle connection (see acquireSchemaLock).
        noLock: true,
        // Each migration commits on its own: a failure leaves the earlier ones applied and
        // recorded, and a migration may call pgm.noTransaction() for CREATE INDEX CONCURRENTLY.
        singleTransaction: false,
        logger: { debug: () => {}, info: log('info'), warn: log('warn'), error: log('error') },
      });
      for (const migration of result) {
        logger.info(
          { event: `migrate.${direction}`, migration: migration.name },
          `${direction === 'up' ? 'applied' : 'reverted'} ${migration.name}`,
        );
      }
      return result.map((m) => m.name);
    } catch (error) {
      if (error instanceof ConnectionError) throw error;
      const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
      throw new MigrationFailedError(`migration ${direction} failed: ${message}`, { cause: error });
    } finally {
      await client.end().catch(() => {});
    }
  }

  async #plan(client: pg.Client): Promise<MigrationRun> {
    const status = await this.#status(client);
    if (status.modified.length > 0) throw new MigrationModifiedError(status.modified);
    const files = await listMigrationFiles(this.#dir);
    const plan: { name: string; sql: string }[] = [];
    for (const name of status.pending) {
      const file = files.find((f) => f.name === name)!;
      plan.push({ name, sql: await migrationSql(file, 'up', this.#options.logger) });
    }
    return { ran: [], plan };
  }

  /** Rows of {@link DATA_TABLES} that reverting `names` would drop, counted now. */
  async #dataAtRisk(client: pg.Client, names: string[]): Promise<DataAtRisk[]> {
    const files = await listMigrationFiles(this.#dir);
    const atRisk: DataAtRisk[] = [];
    for (const name of names) {
      const file = files.find((f) => f.name === name);
      // A missing file cannot be reverted at all; the runner reports it.
      if (!file) continue;
      const dropped = droppedTables(await migrationSql(file, 'down', this.#options.logger));
      for (const table of dropped.filter((t) => DATA_TABLES.includes(t))) {
        if (!(await tableExists(client, table))) continue;
        const { rows } = await client.query<{ n: number }>(
          `SELECT count(*) AS n FROM ${client.escapeIdentifier(table)}`,
        );
        const count = Number(rows[0]?.n ?? 0);
        if (count > 0) atRisk.push({ migration: name, table, rows: count });
      }
    }
    return atRisk;
  }

  async #status(client: pg.Client): Promise<MigrationStatus> {
    const files = await listMigrationFiles(this.#dir);
    const applied = await this.#applied(client);
    const checksums = await this.#checksums(client);
    const appliedNames = new Set(applied.map((m) => m.name));
    const byName = new Map(files.map((f) => [f.name, f]));
    return {
      applied,
      pending: files.filter((f) => !appliedNames.has(f.name)).map((f) => f.name),
      modified: applied
        .filter((m) => {
          const file = byName.get(m.name);
          const recorded = checksums.get(m.name);
          return (
            file !== undefined &&
            recorded !== undefined &&
            !isSameMigration(m.name, recorded, file.checksum)
          );
        })
        .map((m) => `${m.name}${extensionOf(byName.get(m.name))}`),
      missing: applied.filter((m) => !byName.has(m.name)).map((m) => m.name),
    };
  }

  async #applied(client: pg.Client): Promise<AppliedMigration[]> {
    if (!(await tableExists(client, MIGRATIONS_TABLE))) return [];
    const { rows } = await client.query<{ name: string; run_on: Date }>(
      `SELECT name, run_on FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`,
    );
    return rows.map((r) => ({ name: r.name, run_on: new Date(r.run_on).toISOString() }));
  }

  async #checksums(client: pg.Client): Promise<Map<string, string>> {
    if (!(await tableExists(client, CHECKSUMS_TABLE))) return new Map();
    const { rows } = await client.query<{ name: string; checksum: string }>(
      `SELECT name, checksum FROM ${CHECKSUMS_TABLE}`,
    );
    return new Map(rows.map((r) => [r.name, r.checksum]));
  }

  /** Records the checksum of every applied migration that has none yet. */
  async #recordChecksums(client: pg.Client): Promise<void> {
    await client.query(`CREATE TABLE IF NOT EXISTS ${CHECKSUMS_TABLE} (
      name text PRIMARY KEY,
      checksum text NOT NULL,
      recorded_at timestamptz NOT NULL DEFAULT now()
    )`);
    const applied = new Set((await this.#applied(client)).map((m) => m.name));
    const files = (await listMigrationFiles(this.#dir)).filter((f) => applied.has(f.name));
    if (files.length === 0) return;
    await client.query(
      `INSERT INTO ${CHECKSUMS_TABLE} (name, checksum)
       SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (name) DO NOTHING`,
      [files.map((f) => f.name), files.map((f) => f.checksum)],
    );
    // A file recorded under an equivalent earlier checksum now records its current one.
    for (const file of files) {
      const earlier = RELEASED_CHECKSUMS[file.name];
      if (!earlier) continue;
      await client.query(
        `UPDATE ${CHECKSUMS_TABLE} SET checksum = $2, recorded_at = now()
          WHERE name = $1 AND checksum = ANY ($3::text[])`,
        [file.name, file.checksum, earlier],
      );
    }
  }

  async #withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = createClient({
      ...this.#options.connection,
      applicationName: 'hierarchy-db/migrate',
    });
    await connectOrThrow(client, this.#options.connection.target);
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }

  async #withSchemaLock<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.#withClient(async (client) => {
      const release = await acquireSchemaLock(client, {
        waitMs: this.#options.lockWaitMs,
        onWait: (pid) =>
          this.#options.logger.info(
            { event: 'migrate.lock_wait', holder_pid: pid },
            'another migration holds the schema lock; waiting for it',
          ),
      });
      try {
        return await fn(client);
      } finally {
        await release().catch(() => {});
      }
    });
  }
}

function extensionOf(file: MigrationFile | undefined): string {
  return file ? file.path.slice(file.path.lastIndexOf('.')) : '';
}

async function tableExists(client: pg.Client, table: string): Promise<boolean> {
  const { rows } = await client.query<{ exists: boolean }>(
    'SELECT to_regclass($1) IS NOT NULL AS exists',
    [table],
  );
  return rows[0]?.exists ?? false;
}
