/**
 * Bad usage or configuration: an unknown flag, a malformed URL, a bad duration or cron expression.
 * The CLI maps it to exit code 2.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}
