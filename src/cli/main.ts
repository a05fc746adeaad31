import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { redactUrl, rememberPasswords } from '../config/database-url.ts';
import { withholdCommandLineOnlyFlags } from './command-line-only.ts';
import { commands } from './commands/index.ts';
import { EXIT } from './exit-codes.ts';

// The CLI entry: global flags, one file per command, and the exit codes of src/cli/exit-codes.ts.
// Every flag also reads HIERARCHY_DB_<FLAG> from the environment (yargs .env()), except the
// destructive ones (src/cli/command-line-only.ts), whose variables are withheld from yargs.
withholdCommandLineOnlyFlags(process.env);
// Before anything can print: a parse error may echo an argument that holds a URL.
for (const value of [
  ...process.argv,
  process.env.DATABASE_URL,
  process.env.HIERARCHY_DB_DATABASE_URL,
])
  rememberPasswords(value);
const cli = yargs(hideBin(process.argv))
  .scriptName('hierarchy-db')
  .usage('$0 [--database-url URL] [--schema NAME] [--log-level LEVEL] <command>')
  .env('HIERARCHY_DB')
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
  .strict()
  .demandCommand(1, 'name a command')
  .recommendCommands()
  .help()
  .alias('help', 'h')
  .version()
  .wrap(Math.min(110, process.stdout.columns || 100))
  .epilog(
    'Exit codes: 0 success, 1 operation or check failed, 2 bad usage or configuration, 3 database unreachable.',
  )
  .fail((message, error, y) => {
    // Parse errors only: command handlers catch their own errors (see runCommand).
    if (error) throw error;
    process.stderr.write(
      `hierarchy-db: ${redactUrl(message)}\nRun 'hierarchy-db --help' for usage.\n`,
    );
    void y;
    process.exit(EXIT.USAGE);
  });

for (const command of commands) cli.command(command);

await cli.parseAsync();
