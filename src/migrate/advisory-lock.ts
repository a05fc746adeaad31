import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';

/**
 * Advisory lock key shared by `migrate` and `repair`, so a repair cannot race a deploy.
 * (A fixed, project-specific 63-bit number.)
 */
export const SCHEMA_LOCK_KEY = 4_107_315_530_992_117n;

/** The lock was not obtained within the allowed wait. */
export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
  constructor(
    readonly waitedMs: number,
    readonly holderPid: number | undefined,
  ) {
    super(
      `could not take the schema lock within ${waitedMs}ms: another \`hierarchy-db migrate\` or \`repair\`` +
        (holderPid !== undefined ? ` (backend pid ${holderPid})` : '') +
        ' is still running; wait for it or raise --lock-wait',
    );
  }
}

/** Options for {@link acquireSchemaLock}. */
export interface SchemaLockOptions {
  /** Give up after this long. Default 300 000 ms. */
  waitMs?: number;
  /** Pause between attempts. Default 250 ms. */
  pollMs?: number;
  /** Called once when the lock is busy, to tell the operator we are waiting. */
  onWait?: (holderPid: number | undefined) => void;
}

/**
 * Takes the session-level schema lock on `client` by retrying `pg_try_advisory_lock`.
 *
 * Never `pg_advisory_lock`: a session blocked in it keeps a snapshot open, and
 * `CREATE INDEX CONCURRENTLY` in the lock holder waits for that snapshot to go away — an
 * undetected deadlock (the same bug as Flyway's #1654). Between attempts this session is idle,
 * so concurrent index builds proceed. The client should be a dedicated connection that runs
 * nothing else while the lock is held.
 * @returns a function that releases the lock
 */
export async function acquireSchemaLock(
  client: pg.ClientBase,
  options: SchemaLockOptions = {},
): Promise<() => Promise<void>> {
  const waitMs = options.waitMs ?? 300_000;
  const pollMs = options.pollMs ?? 250;
  const started = Date.now();
  let announced = false;
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_lock($1::bigint) AS locked',
      [SCHEMA_LOCK_KEY.toString()],
    );
    if (rows[0]?.locked) {
      return async () => {
        await client.query('SELECT pg_advisory_unlock($1::bigint)', [SCHEMA_LOCK_KEY.toString()]);
      };
    }
    const holderPid = await lockHolderPid(client);
    if (!announced) {
      options.onWait?.(holderPid);
      announced = true;
    }
    const waited = Date.now() - started;
    if (waited >= waitMs) throw new LockTimeoutError(waitMs, holderPid);
    // Jitter so that several deploy pods do not poll in lockstep.
    await sleep(Math.min(pollMs * (0.5 + Math.random()), Math.max(0, waitMs - waited)));
  }
}

async function lockHolderPid(client: pg.ClientBase): Promise<number | undefined> {
  const key = SCHEMA_LOCK_KEY;
  const { rows } = await client.query<{ pid: number }>(
    `SELECT pid FROM pg_locks
      WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = 1
      LIMIT 1`,
    [(key >> 32n).toString(), (key & 0xffffffffn).toString()],
  );
  return rows[0]?.pid;
}
