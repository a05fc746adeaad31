import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { ConfigError } from '../config/config-error.ts';
import { rememberPasswords, resolveDatabaseTarget } from '../config/database-url.ts';
import { COMMAND_LINE_ONLY_FLAGS, ENV_PREFIX } from './command-line-only.ts';

/** The flag (and `HIERARCHY_DB_CONFIG`) that names a configuration file. */
export const CONFIG_FLAG = 'config';

/** Keys a file may not hold: they are not settings of a run. */
const RESERVED_KEYS = new Set([CONFIG_FLAG, 'help', 'version', '_', '$0']);

/** The flags every command takes (src/cli/main.ts): the only keys a file's top level may hold. */
export const GLOBAL_FLAGS = ['database-url', 'schema', 'log-level', 'log-format'] as const;

/** A flag's value as a file may give it. */
export type FlagValue = string | boolean | (string | boolean)[];

/** What a configuration file gives the command being run. */
export interface ConfigFileValues {
  /** Flag name -> value, for yargs' `.config()`. */
  flags: Record<string, FlagValue>;
  /** Where each flag came from in the file (`log-level`, `daemon.grace`), for messages. */
  keys: Record<string, string>;
}

/**
 * The path that `--config FILE` (or `--config=FILE`) names in `argv`, else `HIERARCHY_DB_CONFIG`,
 * else `undefined`. Read before yargs parses, because the file's values must reach yargs as
 * defaults for the command being run.
 */
export function configFilePath(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (arg === `--${CONFIG_FLAG}`) return argv[i + 1];
    if (arg.startsWith(`--${CONFIG_FLAG}=`)) return arg.slice(CONFIG_FLAG.length + 3);
  }
  const fromEnv = env[`${ENV_PREFIX}CONFIG`];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/**
 * Reads a configuration file (JSON, or YAML for `.yaml`/`.yml`) and returns the flag values it
 * gives the command `command`: the global flags of its top level ({@link GLOBAL_FLAGS}) and the
 * keys of the mapping named after the command (`daemon:`, `migrate:`, ...), the latter winning.
 * Sections of other commands are checked but not used, so one file serves every command. Whether
 * a section's keys are flags of its command is left to yargs' strict parsing.
 *
 * The result goes to yargs as a configuration object, below the command line and the
 * environment and above the defaults (see "Configuration" in README.md). A file may not carry
 * the destructive flags of src/cli/command-line-only.ts, anywhere. Throws {@link ConfigError}
 * (exit 2) naming the file for anything it cannot take: a file that cannot be read or parsed,
 * a top level that is not a mapping, a nested value, an unknown section.
 *
 * `database-url` stands in for the flag, so `DATABASE_URL` (an environment variable) wins over
 * it; when `env.DATABASE_URL` is set the file's URL is dropped.
 */
export async function loadConfigFile(
  path: string,
  command: string | undefined,
  commands: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<ConfigFileValues> {
  const where = `--config ${path}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`${where}: cannot read it (${(error as NodeJS.ErrnoException).code})`, {
      cause: error,
    });
  }
  const document = await parseDocument(text, path, where);
  if (document === null || document === undefined) return { flags: {}, keys: {} };
  if (!isMapping(document)) {
    throw new ConfigError(`${where}: expected a mapping of flag names to values at the top level`);
  }

  const flags: Record<string, FlagValue> = {};
  const keys: Record<string, string> = {};
  const sectionValues: Record<string, FlagValue> = {};
  for (const [key, value] of Object.entries(document)) {
    if (isMapping(value)) {
      if (!commands.includes(key)) {
        throw new ConfigError(
          `${where}: '${key}' holds a mapping, but is not a command (sections: ${commands.join(', ')})`,
        );
      }
      for (const [flag, flagValue] of Object.entries(value)) {
        const checked = checkFlag(flag, flagValue, `${key}.${flag}`, where);
        if (key !== command) continue;
        sectionValues[flag] = checked;
        keys[flag] = `${key}.${flag}`;
      }
      continue;
    }
    const checked = checkFlag(key, value, key, where);
    if (!(GLOBAL_FLAGS as readonly string[]).includes(key)) {
      throw new ConfigError(
        `${where}: '${key}' is not a global flag (${GLOBAL_FLAGS.join(', ')}); put a command's flags under its name, e.g. daemon: { ${key}: ... }`,
      );
    }
    flags[key] = checked;
    keys[key] ??= key;
  }
  Object.assign(flags, sectionValues);

  const url = flags['database-url'];
  if (url !== undefined) {
    if (typeof url !== 'string') throw new ConfigError(`${where}: database-url must be a string`);
    rememberPasswords(url);
    if (env.DATABASE_URL) {
      delete flags['database-url'];
      delete keys['database-url'];
    } else {
      try {
        resolveDatabaseTarget(url, {});
      } catch (error) {
        throw new ConfigError(`${where}: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  return { flags, keys };
}

async function parseDocument(text: string, path: string, where: string): Promise<unknown> {
  const extension = extname(path).toLowerCase();
  try {
    if (extension === '.yaml' || extension === '.yml') {
      // Loaded only for a YAML file: every other start stays without it.
      const { parse } = await import('yaml');
      return parse(text, { prettyErrors: true });
    }
    if (extension === '.json') return JSON.parse(text);
  } catch (error) {
    const message = (error as Error).message.split('\n')[0];
    throw new ConfigError(`${where}: not valid ${extension.slice(1).toUpperCase()}: ${message}`, {
      cause: error,
    });
  }
  throw new ConfigError(
    `${where}: expected a .json, .yaml or .yml file, got '${extension || 'no extension'}'`,
  );
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Numbers become text (yargs coerces them back for numeric flags; durations take both). */
function checkFlag(flag: string, value: unknown, key: string, where: string): FlagValue {
  if ((COMMAND_LINE_ONLY_FLAGS as readonly string[]).includes(flag)) {
    throw new ConfigError(
      `${where}: '${key}' is taken from the command line only, never from a file: remove it and pass --${flag} if you mean it`,
    );
  }
  if (RESERVED_KEYS.has(flag)) {
    throw new ConfigError(`${where}: '${key}' cannot be set in a configuration file`);
  }
  const scalar = (item: unknown): string | boolean => {
    if (typeof item === 'boolean' || typeof item === 'string') return item;
    if (typeof item === 'number' && Number.isFinite(item)) return String(item);
    throw new ConfigError(
      `${where}: '${key}' must be a string, a number, a boolean or a list of them, got ${item === null ? 'null' : typeof item}`,
    );
  };
  return Array.isArray(value) ? value.map(scalar) : scalar(value);
}
