import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configFilePath, loadConfigFile } from '../../src/cli/config-file.ts';
import { ConfigError } from '../../src/config/config-error.ts';
import { runCli } from '../helpers/cli.ts';

// `--config FILE` (src/cli/config-file.ts): global flags at the top, a command's flags under its
// name; flag > environment > file > default. No database: `migrate create` shows where a value
// came from by where it writes.
const COMMANDS = ['migrate', 'status', 'daemon', 'seed'];
const dir = mkdtempSync(join(tmpdir(), 'hierarchy-db-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
function file(name: string, text: string): string {
  files += 1;
  const path = join(dir, `${files}-${name}`);
  writeFileSync(path, text);
  return path;
}

async function rejection(promise: Promise<unknown>): Promise<ConfigError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

describe('loadConfigFile', () => {
  const yaml = [
    'log-level: warn',
    'database-url: postgres://owner:s3cret@db.internal:5432/app',
    'daemon:',
    '  database-url: postgres://daemon:other@db.internal:5432/app',
    "  schedule: '*/30 * * * * *'",
    '  on-change: true',
    '  grace: 10000',
    'status:',
    '  max-staleness: 5m',
    '',
  ].join('\n');

  it("gives the global flags and the running command's section, the section winning", async () => {
    const path = file('hierarchy-db.yaml', yaml);
    const daemon = await loadConfigFile(path, 'daemon', COMMANDS, {});
    expect(daemon.flags).toEqual({
      'log-level': 'warn',
      'database-url': 'postgres://daemon:other@db.internal:5432/app',
      schedule: '*/30 * * * * *',
      'on-change': true,
      // Numbers become text: yargs turns it back for numeric flags, durations take both.
      grace: '10000',
    });
    expect(daemon.keys).toMatchObject({ grace: 'daemon.grace', 'log-level': 'log-level' });
    const status = await loadConfigFile(path, 'status', COMMANDS, {});
    expect(status.flags).toEqual({
      'log-level': 'warn',
      'database-url': 'postgres://owner:s3cret@db.internal:5432/app',
      'max-staleness': '5m',
    });
    expect((await loadConfigFile(path, 'seed', COMMANDS, {})).flags).not.toHaveProperty('schedule');
  });

  it('reads the same from JSON, and nothing from an empty file', async () => {
    const json = file(
      'hierarchy-db.json',
      JSON.stringify({ 'log-level': 'warn', daemon: { 'on-change': true, 'http-port': 9464 } }),
    );
    expect((await loadConfigFile(json, 'daemon', COMMANDS, {})).flags).toEqual({
      'log-level': 'warn',
      'on-change': true,
      'http-port': '9464',
    });
    expect(await loadConfigFile(file('empty.yaml', ''), 'daemon', COMMANDS, {})).toEqual({
      flags: {},
      keys: {},
    });
  });

  it('lets DATABASE_URL, an environment variable, win over the file', async () => {
    const path = file('hierarchy-db.yaml', yaml);
    const flags = (
      await loadConfigFile(path, 'status', COMMANDS, { DATABASE_URL: 'postgres://x@y/z' })
    ).flags;
    expect(flags).not.toHaveProperty('database-url');
    expect(flags['log-level']).toBe('warn');
  });

  it('refuses the command-line-only flags anywhere in the file, even in another section', async () => {
    for (const [text, key] of [
      ['migrate:\n  all: true\n', 'migrate.all'],
      ['seed:\n  replace: true\n', 'seed.replace'],
      ['migrate:\n  confirm-data-loss: true\n', 'migrate.confirm-data-loss'],
      ['migrate:\n  count: 3\n', 'migrate.count'],
    ] as const) {
      const error = await rejection(loadConfigFile(file('x.yaml', text), 'status', COMMANDS, {}));
      expect(error.message).toContain(`'${key}' is taken from the command line only`);
    }
  });

  it.each([
    ['unreadable.yaml', null, /cannot read it \(ENOENT\)/],
    ['bad.yaml', 'daemon: [unclosed', /not valid YAML/],
    ['bad.json', '{"log-level": ', /not valid JSON/],
    ['flags.toml', 'log-level = "warn"', /expected a \.json, \.yaml or \.yml file, got '\.toml'/],
    ['list.yaml', '- a\n- b\n', /expected a mapping of flag names to values/],
    ['top.yaml', 'schedule: "* * * * *"\n', /'schedule' is not a global flag.*daemon: \{ schedule/],
    ['section.yaml', 'deamon:\n  grace: 5s\n', /'deamon' holds a mapping, but is not a command/],
    [
      'nested.yaml',
      'daemon:\n  grace:\n    value: 5s\n',
      /'daemon.grace' must be a string, a number, a boolean or a list of them, got object/,
    ],
    ['null.yaml', 'daemon:\n  grace: null\n', /'daemon.grace' must be a string.*got null/],
    ['reserved.yaml', 'daemon:\n  config: other.yaml\n', /'daemon.config' cannot be set/],
    [
      'url.yaml',
      'database-url: mysql://u:hidden-pw@h/d\n',
      /--config .*url\.yaml: malformed database URL.*scheme must be postgres/,
    ],
  ])('refuses %s with an error naming the file', async (name, text, pattern) => {
    const path = text === null ? join(dir, 'missing', name) : file(name, text);
    const error = await rejection(loadConfigFile(path, 'daemon', COMMANDS, {}));
    expect(error.message).toMatch(pattern);
    expect(error.message).toContain(`--config ${path}`);
    expect(error.message).not.toContain('hidden-pw');
  });
});

describe('configFilePath', () => {
  it('takes --config FILE, --config=FILE, else HIERARCHY_DB_CONFIG', () => {
    expect(configFilePath(['status', '--config', 'a.yaml'], {})).toBe('a.yaml');
    expect(configFilePath(['--config=b.json', 'status'], { HIERARCHY_DB_CONFIG: 'c' })).toBe(
      'b.json',
    );
    expect(configFilePath(['status'], { HIERARCHY_DB_CONFIG: 'c.yml' })).toBe('c.yml');
    expect(configFilePath(['status', '--', '--config', 'x'], {})).toBeUndefined();
  });
});

describe('hierarchy-db --config', () => {
  const created = (migrationsDir: string) => readdirSync(migrationsDir);
  const dirs = ['file', 'env', 'flag'].map((name) => {
    const path = join(dir, `migrations-${name}`);
    mkdirSync(path);
    return path;
  });
  const [fileDir, envDir, flagDir] = dirs as [string, string, string];

  it('ranks flag over environment over file over default', async () => {
    const config = file('hierarchy-db.yaml', `migrate:\n  migrations-dir: ${fileDir}\n`);
    const fromFile = await runCli(['migrate', 'create', 'one', '--config', config]);
    expect(fromFile.code, fromFile.stderr).toBe(0);
    expect(created(fileDir)).toEqual(['0001_one.ts']);

    const fromEnv = await runCli(['migrate', 'create', 'two', '--config', config], {
      env: { HIERARCHY_DB_MIGRATIONS_DIR: envDir },
    });
    expect(fromEnv.code, fromEnv.stderr).toBe(0);
    expect(created(envDir)).toEqual(['0001_two.ts']);

    const fromFlag = await runCli(
      ['migrate', 'create', 'three', '--migrations-dir', flagDir, '--config', config],
      { env: { HIERARCHY_DB_MIGRATIONS_DIR: envDir } },
    );
    expect(fromFlag.code, fromFlag.stderr).toBe(0);
    expect(created(flagDir)).toEqual(['0001_three.ts']);
    expect(created(fileDir)).toEqual(['0001_one.ts']);
    expect(created(envDir)).toEqual(['0001_two.ts']);
  });

  it('reads HIERARCHY_DB_CONFIG as --config', async () => {
    const target = join(dir, 'migrations-from-variable');
    mkdirSync(target);
    const config = file(
      'hierarchy-db.json',
      JSON.stringify({ migrate: { 'migrations-dir': target } }),
    );
    const result = await runCli(['migrate', 'create', 'four'], {
      env: { HIERARCHY_DB_CONFIG: config },
    });
    expect(result.code, result.stderr).toBe(0);
    expect(created(target)).toEqual(['0001_four.ts']);
  });

  it('exits 2 naming the file and key for a flag its command does not have', async () => {
    const config = file('hierarchy-db.yaml', 'migrate:\n  shedule: "* * * * *"\n');
    const result = await runCli(['migrate', 'create', 'five', '--config', config]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(
      `(--config ${config}: migrate.shedule is not a flag of hierarchy-db migrate)`,
    );
  });

  it('exits 2 before doing anything for a file it cannot use, hiding passwords', async () => {
    const target = join(dir, 'migrations-untouched');
    mkdirSync(target);
    const config = file(
      'hierarchy-db.yaml',
      `database-url: postgres://u:pw-in-file@h/d\nmigrate:\n  migrations-dir: ${target}\n  all: true\n`,
    );
    const result = await runCli(['migrate', 'create', 'six', '--config', config]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/'migrate\.all' is taken from the command line only/);
    expect(created(target)).toEqual([]);
    const malformed = file('bad.yaml', 'database-url: "postgres://u:pw-in-file@h:notaport/d"\n');
    const bad = await runCli(['status', '--config', malformed]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`--config ${malformed}: malformed database URL`);
    expect(bad.stderr).not.toContain('pw-in-file');
  });

  it('is listed in --help', async () => {
    const help = await runCli(['--help']);
    expect(help.stdout).toContain('--config');
    expect(help.stdout).toMatch(/JSON or YAML file of flags/);
  });
});

describe('the README example file', () => {
  it('holds only flags its commands have, and loads', async () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Configuration'));
    const example = /```yaml\n(# hierarchy-db\.yaml[\s\S]*?)```/.exec(section)?.[1];
    expect(example).toBeDefined();
    const path = file('hierarchy-db.yaml', example!);
    const sections = Object.entries(parse(example!) as Record<string, unknown>).filter(
      (entry): entry is [string, Record<string, unknown>] => typeof entry[1] === 'object',
    );
    expect(sections.map(([name]) => name)).toEqual(['daemon', 'status', 'migrate']);
    for (const [command, flags] of sections) {
      const help = await runCli([command, '--help']);
      for (const flag of Object.keys(flags)) expect(help.stdout, command).toContain(`--${flag}`);
      const loaded = await loadConfigFile(path, command, COMMANDS, {});
      expect(Object.keys(loaded.flags)).toEqual(
        expect.arrayContaining(['database-url', 'log-level', ...Object.keys(flags)]),
      );
    }
  });
});

describe('HIERARCHY_DB_ variables', () => {
  it('are ignored by a command that does not have the flag, and still read by one that does', async () => {
    const target = join(dir, 'migrations-env-shared');
    mkdirSync(target);
    // One container's environment, set up for the daemon.
    const env = {
      HIERARCHY_DB_SCHEDULE: 'not a cron expression',
      HIERARCHY_DB_GRACE: '5s',
      HIERARCHY_DB_SOME_OTHER_TOOL: '1',
      HIERARCHY_DB_MIGRATIONS_DIR: target,
    };
    const create = await runCli(['migrate', 'create', 'seven'], { env });
    expect(create.code, create.stderr).toBe(0);
    expect(readdirSync(target)).toEqual(['0001_seven.ts']);
    // The daemon has --schedule: it reads the variable, and refuses its value.
    const daemon = await runCli(
      ['daemon', '--database-url', 'postgres://u@127.0.0.1:9/d', '--log-format', 'pretty'],
      { env },
    );
    expect(daemon.code).toBe(2);
    expect(daemon.stderr).toContain("--schedule: invalid cron expression 'not a cron expression'");
    // On the command line, a flag the command does not have is still an error.
    const strict = await runCli(['migrate', 'create', 'eight', '--schedule', 'x'], { env });
    expect(strict.code).toBe(2);
    expect(strict.stderr).toContain('Unknown argument: schedule');
  });
});
