/**
 * Process exit codes, documented in the README ("Commands") because scripts and alerting branch
 * on them: keep them stable. Only `src/cli` and `src/daemon` use them.
 */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** The operation or check failed: migration, refresh, staleness budget, verify, SLO. */
  FAILED: 1,
  /** Bad usage or configuration: unknown flag, bad cron, bad duration, malformed URL. */
  USAGE: 2,
  /** The database cannot be reached. */
  UNREACHABLE: 3,
} as const;
