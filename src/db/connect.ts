import type pg from 'pg';
import type { ResolvedDatabaseTarget } from '../config/database-url.ts';
import { isConnectionFailure, toConnectionError } from './connection-error.ts';

/** Connects `client`, turning any connection failure into a `ConnectionError` naming host:port. */
export async function connectOrThrow(
  client: pg.Client,
  target: ResolvedDatabaseTarget,
): Promise<void> {
  // An error on an idle connection (server restart) is reported by the next query instead.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (error) {
    if (isConnectionFailure(error)) throw toConnectionError(error, target.display);
    throw error;
  }
}
