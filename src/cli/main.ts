#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { redactUrl, rememberPasswords } from '../config/database-url.ts';
import { PACKAGE_ROOT } from '../package-paths.ts';
import { withholdCommandLineOnlyFlags } from './command-line-only.ts';
import { COMMANDS, invokedCommand, withExamples } from './commands/index.ts';
import {
  CONFIG_FLAG,
  type ConfigFileValues,
  configFilePath,
  loadConfigFile,
} from './config-file.ts';
import { dropForeignEnvironmentFlags } from './environment-flags.ts';
import { EXIT } from './exit-codes.ts';

// The CLI entry: global flags, one file per command, and the exit codes of src/cli/exit-codes.ts.
// Every flag also reads HIERARCHY_DB_<FLAG> from the environment (yargs .env()), except the
// destructive ones (src/cli/command-line-only.ts), whose variables are withheld from yargs.
// `--config FILE` gives flags below both (src/cli/config-file.ts): flag > environment > file >
// default. A variable for a flag the command does not have is ignored (src/cli/environment-flags.ts).
// Only the command being run is imported (src/cli/commands/index.ts); the others are listed
// for --help by name and description.
withholdCommandLineOnlyFlags(process.env);
// A reader that stops early (`| head`) closes stdout. The rest of the output has nowhere to go,
// but the command still finishes what it does (a migration is not abandoned halfway), and its
// exit code stands; without this, the write error would end the process with a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE' || error.code === 'ERR_STREAM_DESTROYED') return;
  throw error;
});
// Before anything can print: a parse error may echo an argument that holds a URL.
for (const value of [
  ...process.argv,
  process.env.DATABASE_URL,
  process.env.HIERARCHY_DB_DATABASE_URL,
])
  rememberPasswords(value);
const argv = hideBin(process.argv);
const invoked = invokedCommand(argv);
const configPath = configFilePath(argv);
let config: ConfigFileValues = { flags: {}, keys: {} };
if (configPath !== undefined) {
  try {
    config = await loadConfigFile(
      configPath,
      invoked,
      COMMANDS.map((entry) => entry.name),
    );
  } catch (error) {
    process.stderr.write(`hierarchy-db: ${redactUrl((error as Error).message)}\n`);
    process.exit(EXIT.USAGE);
  }
}
const { version } = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as {
  version: string;
};

const parser = yargs(argv);
/** The flags of the command being run, once yargs has built it (untyped in @types/yargs). */
const knownFlags = () =>
  (parser as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions().key;
const cli = parser
  .scriptName('hierarchy-db')
  .usage(
    '$0 [--config FILE] [--database-url URL] [--schema NAME] [--log-level LEVEL] [--log-format json|pretty] <command>',
  )
  .env('HIERARCHY_DB')
  // Before validation; cli's options are then those of the command being run.
  .middleware(
    (parsed) => dropForeignEnvironmentFlags(parsed, knownFlags(), argv, config.keys),
    true,
  )
  .config(config.flags)
  .option(CONFIG_FLAG, {
    type: 'string',
    describe:
      "JSON or YAML file of flags: global flags at the top, a command's flags under its name (daemon:, migrate:, ...); the command line and HIERARCHY_DB_* variables win over it",
  })
  .option('database-url', {
    type: 'string',
    describe: 'postgres://user:password@host:port/db (else DATABASE_URL, else libpq PG* variables)',
  })
  .option('schema', {
    type: 'string',
    describe:
      "the one schema of hierarchy-db's objects and migration tables, set as each session's search_path (default: the role's search_path)",
  })
  .option('log-level', {
    type: 'string',
    default: 'info',
    describe: 'fatal, error, warn, info, debug, trace or silent (logs go to stderr)',
  })
  .option('log-format', {
    type: 'string',
    describe:
      'json (one object per line) or pretty (for a person); default pretty when stderr is a terminal, else json',
  })
  .strict()
  .demandCommand(1, 'name a command')
  .recommendCommands()
  .help()
  .alias('help', 'h')
  .version(version)
  .wrap(Math.min(110, process.stdout.columns || 100))
  .epilog(
    'Exit codes: 0 success, 1 operation or check failed, 2 bad usage or configuration, 3 database unreachable.',
  )
  .fail((message, error, y) => {
    // Parse errors only: command handlers catch their own errors (see runCommand).
    if (error) throw error;
    process.stderr.write(
      `hierarchy-db: ${redactUrl(fromConfigFile(message))}\nRun 'hierarchy-db --help' for usage.\n`,
    );
    void y;
    process.exit(EXIT.USAGE);
  });

/** yargs' "Unknown argument(s): a, b" names the file's keys when they came from the file. */
function fromConfigFile(message: string): string {
  const unknown = /^Unknown arguments?: (.+)$/.exec(message)?.[1]?.split(', ');
  const fileKeys = unknown?.map((name) => config.keys[name]).filter((key) => key !== undefined);
  if (!fileKeys?.length) return message;
  return `${message} (--config ${configPath}: ${fileKeys.join(', ')} ${fileKeys.length === 1 ? 'is not a flag' : 'are not flags'} of hierarchy-db ${invoked})`;
}

for (const entry of COMMANDS) {
  if (entry.name === invoked) {
    cli.command(withExamples(entry, await entry.load()));
    continue;
  }
  cli.command({
    command: entry.name,
    describe: entry.describe,
    // Reached only when the command was not found where invokedCommand looks (after an
    // unknown flag, say): its module was not loaded, so nothing can run.
    handler: () => {
      process.stderr.write(
        `hierarchy-db: could not tell which command to run; name it before its flags (hierarchy-db ${entry.name} ...)\n`,
      );
      process.exitCode = EXIT.USAGE;
    },
  });
}

await cli.parseAsync();
