/** What a {@link ConfigError} is about: the option, as its flag is named without dashes, and the value given. */
export interface ConfigErrorData {
  option: string;
  value: unknown;
}

/**
 * Bad usage or configuration: an unknown flag, a malformed URL, a bad duration or cron expression.
 * The CLI maps it to exit code 2. When it is about one option it carries the option and value
 * ({@link ConfigErrorData}): the message is then `<option>: <problem>`, and the CLI words the
 * option as its flag (`--<option>: <problem>`).
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The option at fault (e.g. `statement-timeout`), when there is one. */
  readonly option: string | undefined;
  /** The value given for it. */
  readonly value: unknown;
  /** The problem alone, without the option's name. */
  readonly problem: string;

  constructor(problem: string, options: Partial<ConfigErrorData> & { cause?: unknown } = {}) {
    const { option, value, cause } = options;
    super(option === undefined ? problem : `${option}: ${problem}`, { cause });
    this.option = option;
    this.value = value;
    this.problem = problem;
  }
}
