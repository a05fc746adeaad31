import type { Argv, CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.ts';

/**
 * One command as `--help` lists it, and how to load it. A command's module (and with it the
 * daemon, kysely, node-pg-migrate, ...) is imported only when that command runs: `--help` and
 * every other command start without it. `name` and `describe` repeat the module's own
 * (test/cli/lazy-commands.test.ts keeps them equal).
 */
export interface CommandEntry {
  name: string;
  describe: string;
  /** `[command line, what it does]` pairs for the command's --help (`$0` is hierarchy-db). */
  examples?: readonly (readonly [string, string])[];
  load(): Promise<CommandModule<GlobalArgs, never>>;
}

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'migrate',
    describe: 'versioned schema migrations',
    examples: [
      ['$0 migrate up --dry-run', 'print the SQL of the pending migrations, change nothing'],
      ['$0 migrate status --json', 'applied, pending and modified migrations as JSON'],
      [
        '$0 migrate create add_entity_kind --migrations-dir db/migrations',
        'a new numbered migration in your project',
      ],
    ],
    load: async () => (await import('./migrate.ts')).migrateCommand as never,
  },
  {
    name: 'refresh',
    describe: 'refresh the views now (trigger manual); exit 1 if a view failed',
    examples: [
      ['$0 refresh', 'refresh the views that have pending changes'],
      [
        '$0 refresh --view mv_entity_ancestors --force --json',
        'refresh one view even if clean, results as JSON',
      ],
    ],
    load: async () => (await import('./refresh.ts')).refreshCommand as never,
  },
  {
    name: 'status',
    describe:
      'per view: populated, last refresh, staleness (data age), pending changes; exit 1 if staler than --max-staleness or unpopulated',
    examples: [
      ['$0 status --max-staleness 5m', 'exit 1 when a view is more than 5 minutes stale'],
      ['$0 status --json', 'the same per view, as JSON'],
    ],
    load: async () => (await import('./status.ts')).statusCommand as never,
  },
  {
    name: 'views',
    describe:
      'list the views with strategy, relation kind, rows and last refresh; set-strategy switches online',
    examples: [
      ['$0 views', 'strategy, relation, rows and last refresh of each view'],
      [
        '$0 views set-strategy incremental --view mv_descendant_counts',
        'maintain one view incrementally, switched online',
      ],
    ],
    load: async () => (await import('./views.ts')).viewsCommand as never,
  },
  {
    name: 'history',
    describe: 'refresh audit rows, newest first',
    examples: [
      ['$0 history --limit 50', 'the last 50 refreshes'],
      ['$0 history --view mv_entity_ancestors --json', "one view's refreshes as JSON"],
    ],
    load: async () => (await import('./history.ts')).historyCommand as never,
  },
  {
    name: 'verify',
    describe:
      'schema checklist against sql/: extensions, entities, indexes, views and their drift, functions, triggers, grants, audit, migrations; exit 1 if a check fails',
    examples: [
      ['$0 verify', 'the schema checklist; exit 1 if a check fails'],
      ['$0 verify --data --json', 'also compare view contents with their definitions, as JSON'],
    ],
    load: async () => (await import('./verify.ts')).verifyCommand as never,
  },
  {
    name: 'repair',
    describe:
      'recreate missing, invalid or drifted derived objects (functions, definition views, triggers, views rebuilt online, indexes, grants) from sql/; never touches entities data; exit 1 unless verify passes afterwards',
    examples: [
      ['$0 repair --dry-run', 'print the SQL repair would run, change nothing'],
      ['$0 repair --json', 'repair, then the checklist afterwards as JSON'],
    ],
    load: async () => (await import('./repair.ts')).repairCommand as never,
  },
  {
    name: 'daemon',
    describe:
      'run the refresh daemon: cron and/or change-driven refresh, /healthz, /readyz, /metrics; safe as several replicas',
    examples: [
      [
        "$0 daemon --schedule '*/30 * * * * *' --on-change",
        'refresh every 30 s and soon after each change',
      ],
      [
        '$0 daemon --on-change --http-host 0.0.0.0 --http-port 9464',
        'change-driven, metrics and probes on all interfaces',
      ],
    ],
    load: async () => (await import('./daemon.ts')).daemonCommand as never,
  },
  {
    name: 'seed',
    describe: 'fill entities with a synthetic hierarchy (deterministic with --random-seed)',
    examples: [
      [
        '$0 seed --entities 100000 --random-seed 42',
        'the same 100 000-entity hierarchy every time',
      ],
      ['$0 seed --entities 1000 --replace', 'replace what entities holds'],
    ],
    load: async () => (await import('./seed.ts')).seedCommand as never,
  },
  {
    name: 'slo',
    describe:
      'validate the SLOs (ancestor lookup latency, refresh duration); exit 1 if one is missed',
    load: async () => (await import('./slo.ts')).sloCommand as never,
  },
  {
    name: 'demo',
    describe:
      'the whole lifecycle on a throwaway embedded PostgreSQL, no setup needed: migrate, seed, refresh, move a subtree, stale -> fresh, SLO, history',
    examples: [
      ['$0 demo', 'the whole lifecycle, then clean up'],
      ['$0 demo --keep', 'leave the database running and print its URL'],
    ],
    load: async () => (await import('./demo.ts')).demoCommand as never,
  },
];

/** The command with its entry's examples added to its --help. */
export function withExamples(
  entry: CommandEntry,
  command: CommandModule<GlobalArgs, never>,
): CommandModule<GlobalArgs, never> {
  const { builder } = command;
  const examples = entry.examples;
  if (!examples?.length) return command;
  return {
    ...command,
    builder: (y: Argv<GlobalArgs>) => {
      const built =
        typeof builder === 'function' ? (builder(y) ?? y) : builder ? y.options(builder) : y;
      return (built as Argv<GlobalArgs>).example(
        examples.map(([line, what]) => [line, what]),
      ) as never;
    },
  };
}

/** Global flags that take a value (`--flag VALUE`): the value is not the command. */
const GLOBAL_FLAGS_WITH_VALUE = new Set([
  '--config',
  '--database-url',
  '--schema',
  '--log-level',
  '--log-format',
]);

/**
 * The command that `argv` (without node and the script) names: its first argument that is not a
 * global flag or a global flag's value. `undefined` when there is none (`--help`, `--version`).
 */
export function invokedCommand(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    if (arg === '--') return undefined;
    if (!arg.startsWith('-')) return arg;
    if (GLOBAL_FLAGS_WITH_VALUE.has(arg)) i += 1;
  }
  return undefined;
}
