import { constants } from 'node:os';

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

/**
 * The exit code after a stop signal, by the shell's convention: 128 + the signal's number
 * (130 for SIGINT, 143 for SIGTERM), as if the signal had killed the process.
 */
export function exitCodeForSignal(signal: NodeJS.Signals): number {
  return 128 + constants.signals[signal];
}
