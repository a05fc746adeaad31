import { ConfigError } from '../config/config-error.ts';

/** The prefix of the variables yargs reads flags from (`.env()` in src/cli/main.ts). */
export const ENV_PREFIX = 'HIERARCHY_DB_';

/**
 * Flags that destroy data or revert the schema. They are taken from the command line only:
 * a variable left in a shell or a deploy manifest must never turn an ordinary command into a
 * destructive one (`HIERARCHY_DB_ALL=true` would make every `migrate down` revert everything).
 */
export const COMMAND_LINE_ONLY_FLAGS = ['all', 'count', 'confirm-data-loss', 'replace'] as const;
export type CommandLineOnlyFlag = (typeof COMMAND_LINE_ONLY_FLAGS)[number];

/** Appended to the `--help` text of each of those flags. */
export const COMMAND_LINE_ONLY_NOTE = '(command line only, never read from the environment)';

const withheld = new Map<CommandLineOnlyFlag, string>();

/** yargs' reading of a variable name: the part after the prefix, case and `_`/`-` aside. */
function flagKey(text: string): string {
  return text.toLowerCase().replace(/[-_]/g, '');
}

/**
 * Removes the `HIERARCHY_DB_<FLAG>` variables of {@link COMMAND_LINE_ONLY_FLAGS} from `env`
 * before yargs reads it, remembering which were set so that a command owning such a flag can
 * refuse to run (see {@link refuseWithheldFlags}). Call once, before parsing.
 */
export function withholdCommandLineOnlyFlags(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of Object.keys(env)) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    const key = flagKey(name.slice(ENV_PREFIX.length));
    const flag = COMMAND_LINE_ONLY_FLAGS.find((f) => flagKey(f) === key);
    if (flag === undefined) continue;
    withheld.set(flag, name);
    delete env[name];
  }
}

/**
 * Throws {@link ConfigError} (exit 2) when a variable for one of `flags` was set: the operator
 * meant something by it, and running without it would do something else silently.
 */
export function refuseWithheldFlags(flags: readonly CommandLineOnlyFlag[]): void {
  for (const flag of flags) {
    const name = withheld.get(flag);
    if (name === undefined) continue;
    throw new ConfigError(
      `${name} is set, but --${flag} is taken from the command line only: unset ${name} and pass --${flag} if you mean it`,
    );
  }
}
