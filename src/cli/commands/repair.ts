import type { CommandModule } from 'yargs';
import { parseDuration } from '../../config/duration.ts';
import { DEFAULT_REPAIR_LOCK_TIMEOUT_MS, repairSchema } from '../../verify/schema-repairer.ts';
import { CommandFailedError, type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { migrationsDirOption } from '../options.ts';
import { printLine } from '../print.ts';
import { formatChecklist } from './verify.ts';

interface RepairArgs extends GlobalArgs {
  'dry-run': boolean;
  'lock-wait': string;
  'lock-timeout': string;
  'migrations-dir'?: string;
}

/** `hierarchy-db repair`: recreate missing, invalid or drifted derived objects. */
export const repairCommand: CommandModule<GlobalArgs, RepairArgs> = {
  command: 'repair',
  describe:
    'recreate missing, invalid or drifted derived objects (views, indexes, functions, triggers, grants) from the migrations; never touches entities data; exit 1 unless verify passes afterwards',
  builder: (y) =>
    y
      .option('dry-run', {
        type: 'boolean',
        default: false,
        describe: 'print the SQL repair would run; change nothing',
      })
      .option('lock-wait', {
        type: 'string',
        default: '5m',
        describe: 'how long to wait for a running migrate or repair to finish',
      })
      .option('lock-timeout', {
        type: 'string',
        default: `${DEFAULT_REPAIR_LOCK_TIMEOUT_MS / 1000}s`,
        describe: 'bound on each lock wait of a repair step (0 = none)',
      })
      .option('migrations-dir', migrationsDirOption) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const outcome = await repairSchema({
        connection: ctx.connection,
        logger: ctx.logger,
        dryRun: args['dry-run'],
        lockWaitMs: parseDuration(args['lock-wait'], 'lock-wait'),
        lockTimeoutMs: parseDuration(args['lock-timeout'], 'lock-timeout'),
        ...(args['migrations-dir'] ? { migrationsDir: args['migrations-dir'] } : {}),
      });
      if (outcome.refused) throw new CommandFailedError(outcome.refused);
      const { plan } = outcome;
      const unrepairable = plan.unrepairable.map(
        (c) => `${c.name} — ${c.detail}${c.fix ? ` (fix: ${c.fix})` : ''}`,
      );

      if (outcome.dryRun) {
        printLine(
          plan.actions.length === 0
            ? '-- dry run: nothing to repair'
            : `-- dry run: ${plan.actions.length} repair step(s); nothing was changed\n`,
        );
        if (plan.actions.length > 0) printLine(outcome.planSql);
        for (const line of unrepairable) printLine(`-- not repaired by repair: ${line}`);
        return EXIT.OK;
      }

      if (outcome.steps.length === 0) printLine('nothing to repair');
      for (const step of outcome.steps) {
        printLine(
          step.ok
            ? `✅ repaired: ${step.action.description} (${step.durationMs} ms)`
            : `❌ failed: ${step.action.description}: ${step.error}`,
        );
      }
      for (const line of unrepairable) printLine(`⚠️  not repaired: ${line}`);
      const after = outcome.after!;
      printLine('');
      if (after.ok) {
        printLine(`verify: all ${after.checks.length} checks pass`);
        return EXIT.OK;
      }
      printLine(formatChecklist(after.checks.filter((c) => !c.ok)));
      return EXIT.FAILED;
    }),
};
