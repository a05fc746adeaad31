import type { CommandModule } from 'yargs';
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
  load(): Promise<CommandModule<GlobalArgs, never>>;
}

/** Every command, in the order `--help` lists them. */
export const COMMANDS: readonly CommandEntry[] = [
  {
    name: 'migrate',
    describe: 'versioned schema migrations',
    load: async () => (await import('./migrate.ts')).migrateCommand as never,
  },
  {
    name: 'refresh',
    describe: 'refresh the views now (trigger manual); exit 1 if a view failed',
    load: async () => (await import('./refresh.ts')).refreshCommand as never,
  },
  {
    name: 'status',
    describe:
      'per view: populated, last refresh, staleness (data age), pending changes; exit 1 if staler than --max-staleness or unpopulated',
    load: async () => (await import('./status.ts')).statusCommand as never,
  },
  {
    name: 'views',
    describe:
      'list the views with strategy, relation kind, rows and last refresh; set-strategy switches online',
    load: async () => (await import('./views.ts')).viewsCommand as never,
  },
  {
    name: 'history',
    describe: 'refresh audit rows, newest first',
    load: async () => (await import('./history.ts')).historyCommand as never,
  },
  {
    name: 'verify',
    describe:
      'schema checklist against sql/: extensions, entities, indexes, views and their drift, functions, triggers, grants, audit, migrations; exit 1 if a check fails',
    load: async () => (await import('./verify.ts')).verifyCommand as never,
  },
  {
    name: 'repair',
    describe:
      'recreate missing, invalid or drifted derived objects (functions, definition views, triggers, views rebuilt online, indexes, grants) from sql/; never touches entities data; exit 1 unless verify passes afterwards',
    load: async () => (await import('./repair.ts')).repairCommand as never,
  },
  {
    name: 'daemon',
    describe:
      'run the refresh daemon: cron and/or change-driven refresh, /healthz, /readyz, /metrics; safe as several replicas',
    load: async () => (await import('./daemon.ts')).daemonCommand as never,
  },
  {
    name: 'seed',
    describe: 'fill entities with a synthetic hierarchy (deterministic with --random-seed)',
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
    load: async () => (await import('./demo.ts')).demoCommand as never,
  },
];

/** Global flags that take a value (`--flag VALUE`): the value is not the command. */
const GLOBAL_FLAGS_WITH_VALUE = new Set(['--database-url', '--log-level']);

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
