import type { Arguments } from 'yargs';
import { ENV_PREFIX } from './command-line-only.ts';

/** A `HIERARCHY_DB_<FLAG>` variable as yargs reads it: the flag's kebab and camel-case keys. */
function flagKeys(variable: string): { kebab: string; camel: string } {
  const kebab = variable.slice(ENV_PREFIX.length).toLowerCase().replace(/_/g, '-');
  return { kebab, camel: kebab.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase()) };
}

/**
 * yargs middleware (run before validation): drops the values that `HIERARCHY_DB_<FLAG>` variables
 * gave for flags the command being run does not have. One environment serves every command (a
 * container's, a shell's): `HIERARCHY_DB_SCHEDULE` set for the daemon must not make
 * `hierarchy-db status` fail as if it had been passed `--schedule`. What the command line or a
 * configuration file gives is still checked strictly; `known` are the command's flags.
 */
export function dropForeignEnvironmentFlags(
  parsed: Arguments,
  known: Record<string, unknown>,
  argv: readonly string[],
  fileKeys: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
): void {
  for (const variable of Object.keys(env)) {
    if (!variable.startsWith(ENV_PREFIX)) continue;
    const { kebab, camel } = flagKeys(variable);
    if (kebab in known || camel in known || kebab in fileKeys) continue;
    const given = argv.some(
      (arg) => arg === `--${kebab}` || arg.startsWith(`--${kebab}=`) || arg === `--no-${kebab}`,
    );
    if (given) continue;
    delete parsed[kebab];
    delete parsed[camel];
  }
}
