import type { CommandModule } from 'yargs';
import type { CheckResult } from '../../verify/checks.ts';
import { reportJson, verifySchema } from '../../verify/schema-verifier.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { migrationsDirOption } from '../options.ts';
import { printJson, printLine } from '../print.ts';

interface VerifyArgs extends GlobalArgs {
  json: boolean;
  data: boolean;
  'migrations-dir'?: string;
}

/** The ✅/❌ checklist, with the fix under each failed item. */
export function formatChecklist(checks: CheckResult[]): string {
  const lines: string[] = [];
  for (const check of checks) {
    lines.push(`${check.ok ? '✅' : '❌'} ${check.name} — ${check.detail}`);
    if (!check.ok && check.fix) lines.push(`     fix: ${check.fix}`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  lines.push('');
  lines.push(
    failed === 0
      ? `all ${checks.length} checks pass`
      : `${failed} of ${checks.length} checks FAILED; run the fixes above (\`hierarchy-db repair --dry-run\` shows what repair would do)`,
  );
  return lines.join('\n');
}

/** `hierarchy-db verify`: the schema checklist against sql/; exit 1 unless every check passes. */
export const verifyCommand: CommandModule<GlobalArgs, VerifyArgs> = {
  command: 'verify',
  describe:
    'schema checklist against sql/: extensions, entities, indexes, views and their drift, functions, triggers, grants, audit, migrations; exit 1 if a check fails',
  builder: (y) =>
    y
      .option('json', {
        type: 'boolean',
        default: false,
        describe:
          'one JSON document on stdout: { "ok", "checks": [ { "name", "ok", "detail", "fix" } ] }',
      })
      .option('data', {
        type: 'boolean',
        default: false,
        describe:
          "also compare each view's contents with its definition (reads both in full) and report the rows that differ",
      })
      .option('migrations-dir', migrationsDirOption) as never,
  handler: (args) =>
    runCommand(args, async (ctx) => {
      const report = await verifySchema({
        connection: ctx.connection,
        logger: ctx.logger,
        data: args.data,
        ...(args['migrations-dir'] ? { migrationsDir: args['migrations-dir'] } : {}),
      });
      if (args.json) printJson(reportJson(report));
      else printLine(formatChecklist(report.checks));
      return report.ok ? EXIT.OK : EXIT.FAILED;
    }),
};
