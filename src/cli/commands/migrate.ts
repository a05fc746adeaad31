import type { Argv, CommandModule } from 'yargs';
import { ConfigError } from '../../config/config-error.ts';
import { parseDuration } from '../../config/duration.ts';
import { createMigrationFile } from '../../migrate/migration-files.ts';
import {
  DataLossError,
  formatDataAtRisk,
  type MigrationRun,
  Migrator,
} from '../../migrate/migrator.ts';
import { COMMAND_LINE_ONLY_NOTE } from '../command-line-only.ts';
import { type CommandContext, type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { jsonOption, migrationsDirOption } from '../options.ts';
import { formatTable, printJson, printLine } from '../print.ts';

interface MigrateArgs extends GlobalArgs {
  'lock-wait': string;
  'migrations-dir'?: string;
}

function migrator(ctx: CommandContext, args: MigrateArgs): Migrator {
  return new Migrator({
    connection: ctx.connection,
    logger: ctx.logger,
    lockWaitMs: parseDuration(args['lock-wait'], 'lock-wait'),
    ...(args['migrations-dir'] ? { dir: args['migrations-dir'] } : {}),
  });
}

const up: CommandModule<MigrateArgs, MigrateArgs & { 'dry-run': boolean; json: boolean }> = {
  command: 'up',
  describe: 'apply pending migrations (safe when several deploy pods run it at once)',
  builder: (y) =>
    y
      .option('dry-run', {
        type: 'boolean',
        default: false,
        describe: 'print the SQL of pending migrations; write nothing to the database',
      })
      .option(
        'json',
        jsonOption(
          'one JSON document on stdout: { "applied": [names] } or, with --dry-run, { "plan": [{ "name", "sql" }] }',
        ),
      ),
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const result = await migrator(ctx, args).up({ dryRun: args['dry-run'] });
      if (args.json) {
        printJson(result.plan ? { plan: result.plan } : { applied: result.ran });
        return EXIT.OK;
      }
      if (result.plan) {
        if (result.plan.length === 0) printLine('-- nothing pending');
        for (const step of result.plan) printLine(`-- ${step.name}\n${step.sql}\n`);
        return EXIT.OK;
      }
      printLine(
        result.ran.length === 0
          ? 'schema is up to date'
          : `applied ${result.ran.length} migration(s): ${result.ran.join(', ')}`,
      );
      return EXIT.OK;
    }),
};

const down: CommandModule<
  MigrateArgs,
  MigrateArgs & { count?: number; all?: boolean; 'confirm-data-loss'?: boolean; json: boolean }
> = {
  command: 'down',
  describe:
    'revert the last migration, the last N, or all; refuses (exit 2) to drop tables holding rows without --confirm-data-loss',
  builder: (y) =>
    y
      .option('count', {
        type: 'number',
        describe: `how many migrations to revert (default 1) ${COMMAND_LINE_ONLY_NOTE}`,
      })
      .option('all', {
        type: 'boolean',
        describe: `revert every applied migration ${COMMAND_LINE_ONLY_NOTE}`,
      })
      .option('confirm-data-loss', {
        type: 'boolean',
        describe: `revert even when that drops entities or mv_refresh_audit holding rows ${COMMAND_LINE_ONLY_NOTE}`,
      })
      .option('json', jsonOption('one JSON document on stdout: { "reverted": [names] }'))
      // No defaults above: yargs counts a defaulted flag as given, and --count could never run.
      .conflicts('count', 'all'),
  handler: (args) =>
    runCommand(
      args,
      async (ctx) => {
        const count = args.all ? Number.POSITIVE_INFINITY : (args.count ?? 1);
        if (!(count >= 1) || (!args.all && !Number.isInteger(count))) {
          throw new ConfigError(`--count: expected a whole number >= 1, got ${args.count}`);
        }
        let result: MigrationRun;
        try {
          result = await migrator(ctx, args).down(count, {
            confirmDataLoss: args['confirm-data-loss'] === true,
          });
        } catch (error) {
          if (!(error instanceof DataLossError)) throw error;
          throw new ConfigError(
            `migrate down would drop ${formatDataAtRisk(error.tables)}; nothing was reverted: back the data up, then run it again with --confirm-data-loss`,
            { cause: error },
          );
        }
        if (args.json) {
          printJson({ reverted: result.ran });
          return EXIT.OK;
        }
        printLine(
          result.ran.length === 0
            ? 'nothing to revert'
            : `reverted ${result.ran.length} migration(s): ${result.ran.join(', ')}`,
        );
        return EXIT.OK;
      },
      { commandLineOnly: ['all', 'count', 'confirm-data-loss'] },
    ),
};

const status: CommandModule<MigrateArgs, MigrateArgs & { json: boolean }> = {
  command: 'status',
  describe: 'applied, pending and modified migrations (exit 1 when one was modified)',
  builder: (y) => y.option('json', jsonOption()),
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const result = await migrator(ctx, args).status();
      if (args.json) {
        printJson({
          applied: result.applied,
          pending: result.pending,
          modified: result.modified,
          missing: result.missing,
        });
      } else {
        const rows = [
          ...result.applied.map((m) => [m.name, 'applied', m.run_on]),
          ...result.pending.map((name) => [name, 'pending', null]),
        ];
        printLine(formatTable(['migration', 'state', 'run_on'], rows));
        for (const file of result.modified) printLine(`MODIFIED since applied: ${file}`);
        for (const name of result.missing) printLine(`MISSING file of applied migration: ${name}`);
      }
      if (result.modified.length > 0) {
        process.stderr.write(
          `hierarchy-db: applied migration(s) modified since applied: ${result.modified.join(', ')}\n`,
        );
        return EXIT.FAILED;
      }
      return result.missing.length > 0 ? EXIT.FAILED : EXIT.OK;
    }),
};

const create: CommandModule<MigrateArgs, MigrateArgs & { name: string }> = {
  command: 'create <name>',
  describe: 'new migration file from the template',
  builder: (y) =>
    y.positional('name', {
      type: 'string',
      demandOption: true,
      describe: 'short name, e.g. add_entity_kind',
    }),
  handler: (args) =>
    runCommand(args, async () => {
      const path = await createMigrationFile(args.name, args['migrations-dir']);
      printLine(path);
      return EXIT.OK;
    }),
};

/** `hierarchy-db migrate <up|down|status|create>`. */
export const migrateCommand: CommandModule<GlobalArgs, MigrateArgs> = {
  command: 'migrate',
  describe: 'versioned schema migrations',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('lock-wait', {
        type: 'string',
        default: '5m',
        describe: 'how long to wait for another migration or repair to finish',
      })
      .option('migrations-dir', migrationsDirOption)
      .command(
        up as CommandModule<
          GlobalArgs & { 'lock-wait': string },
          MigrateArgs & { 'dry-run': boolean }
        >,
      )
      .command(down as never)
      .command(status as never)
      .command(create as never)
      .demandCommand(1, 'name a subcommand: up, down, status or create') as Argv<MigrateArgs>,
  handler: () => {},
};
