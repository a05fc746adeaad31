import type { CommandModule } from 'yargs';
import { parseDuration } from '../../config/duration.ts';
import {
  DEFAULT_REPAIR_LOCK_TIMEOUT_MS,
  type RepairAction,
  type RepairOutcome,
  repairSchema,
} from '../../verify/schema-repairer.ts';
import { reportJson } from '../../verify/schema-verifier.ts';
import { CommandFailedError, type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { jsonOption, migrationsDirOption } from '../options.ts';
import { printJson, printLine } from '../print.ts';
import { formatChecklist } from './verify.ts';

interface RepairArgs extends GlobalArgs {
  'dry-run': boolean;
  json: boolean;
  'lock-wait': string;
  'lock-timeout': string;
  'migrations-dir'?: string;
}

/** The plan as SQL a person can read and run (what `repair --dry-run` prints). */
export function formatPlan(actions: RepairAction[]): string {
  return actions
    .map((action, i) =>
      [
        `-- ${i + 1}. ${action.description}`,
        ...action.reasons.map((reason) => `--    because ${reason.replace(/\n/g, ' ')}`),
        ...(action.transactional ? ['BEGIN;'] : []),
        ...action.statements.map((s) => `${s.replace(/;\s*$/, '')};`),
        ...(action.transactional ? ['COMMIT;'] : []),
        '',
      ].join('\n'),
    )
    .join('\n');
}

/** `repair --json`: the steps planned (dry run) or run, and the checklist afterwards. */
function outcomeJson(outcome: RepairOutcome) {
  return {
    ok: outcome.refused === null && (outcome.dryRun || (outcome.after?.ok ?? false)),
    dry_run: outcome.dryRun,
    refused: outcome.refused,
    actions: outcome.actions.map((action) => {
      const step = outcome.steps.find((s) => s.action === action);
      return {
        description: action.description,
        reasons: action.reasons,
        statements: action.statements,
        ...(step ? { ok: step.ok, duration_ms: step.durationMs, error: step.error ?? null } : {}),
      };
    }),
    unrepairable: outcome.unrepairable.map(({ name, detail, fix }) => ({ name, detail, fix })),
    after: outcome.after ? reportJson(outcome.after) : null,
  };
}

/** `hierarchy-db repair`: recreate missing, invalid or drifted derived objects from sql/. */
export const repairCommand: CommandModule<GlobalArgs, RepairArgs> = {
  command: 'repair',
  describe:
    'recreate missing, invalid or drifted derived objects (functions, definition views, triggers, views rebuilt online, indexes, grants) from sql/; never touches entities data; exit 1 unless verify passes afterwards',
  builder: (y) =>
    y
      .option('dry-run', {
        type: 'boolean',
        default: false,
        describe: 'print the SQL repair would run; change nothing',
      })
      .option(
        'json',
        jsonOption(
          'one JSON document on stdout: { "ok", "dry_run", "refused", "actions", "unrepairable", "after" }',
        ),
      )
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
      if (args.json) {
        const json = outcomeJson(outcome);
        printJson(json);
        return json.ok ? EXIT.OK : EXIT.FAILED;
      }
      if (outcome.refused) throw new CommandFailedError(outcome.refused);
      const unrepairable = outcome.unrepairable.map(
        (c) => `${c.name} — ${c.detail}${c.fix ? ` (fix: ${c.fix})` : ''}`,
      );
      if (outcome.dryRun) {
        const count = outcome.actions.length;
        printLine(
          count === 0
            ? '-- dry run: nothing to repair'
            : `-- dry run: ${count} repair step(s); nothing was changed\n`,
        );
        if (count > 0) printLine(formatPlan(outcome.actions));
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
