import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Polls `check` every `intervalMs` until it returns true and resolves with the time that took;
 * fails after `timeoutMs`, naming `what` and the last error `check` threw (a throw counts as
 * "not yet": the HTTP server is not up, the row is not there yet). The one way tests wait for a
 * condition instead of sleeping for a fixed time.
 */
export async function waitUntil(
  check: () => Promise<boolean> | boolean,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<number> {
  const started = Date.now();
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return Date.now() - started;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() - started > timeoutMs) {
      const detail =
        lastError === undefined
          ? ''
          : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs}ms: ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}
