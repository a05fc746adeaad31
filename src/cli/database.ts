import { type DatabaseHandle, openDatabase } from '../db/database.ts';
import type { CommandContext } from './context.ts';

/** Opens the database for a command, checks it answers, and always closes it. */
export async function withDatabase<T>(
  ctx: CommandContext,
  fn: (handle: DatabaseHandle) => Promise<T>,
): Promise<T> {
  const handle = openDatabase(ctx.connection);
  try {
    await handle.ping();
    return await fn(handle);
  } finally {
    await handle.close().catch(() => {});
  }
}
