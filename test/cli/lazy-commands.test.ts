import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, invokedCommand } from '../../src/cli/commands/index.ts';
import { CLI_PATH, runCli, runNode } from '../helpers/cli.ts';

// `--help` and each command import only what they need: the command being run is loaded, the
// others are listed by name and description (src/cli/commands/index.ts).

const HOOKS = new URL('../helpers/record-imports.mjs', import.meta.url).href;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hierarchy-db-imports-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the CLI and returns its result with every module URL it resolved. */
async function importsOf(args: string[]) {
  const log = join(dir, `${args.join('_').replace(/\W+/g, '_')}.log`);
  const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(HOOKS)})`;
  const result = await runNode(['--import', register, CLI_PATH, ...args], {
    env: { IMPORT_LOG_FILE: log },
  });
  const urls = (await readFile(log, 'utf8')).trim().split('\n');
  return { result, urls };
}

/** What `--help` must never load: the daemon, database and migration machinery. */
const HEAVY = [
  /\/node_modules\/kysely\//,
  /\/node_modules\/prom-client\//,
  /\/node_modules\/node-pg-migrate\//,
  /\/node_modules\/pg\//,
  /\/node_modules\/pino\//,
  /\/dist\/daemon\//,
  /\/dist\/verify\//,
  /\/dist\/migrate\//,
];

describe('lazy command loading', () => {
  it('--help lists every command and imports none of them', async () => {
    const { result, urls } = await importsOf(['--help']);
    expect(result.code, result.stderr).toBe(0);
    for (const command of COMMANDS) expect(result.stdout).toContain(`hierarchy-db ${command.name}`);
    // The recording works: it saw the CLI's own modules.
    expect(urls.some((u) => u.endsWith('/dist/cli/commands/index.js'))).toBe(true);
    expect(urls.some((u) => u.endsWith('/node_modules/yargs/index.mjs'))).toBe(true);
    expect(urls.filter((u) => /\/dist\/cli\/commands\/(?!index\.js)/.test(u))).toEqual([]);
    for (const heavy of HEAVY) expect(urls.filter((u) => heavy.test(u))).toEqual([]);
  });

  it('a command imports its own module and not the daemon, migrations or verify', async () => {
    const { result, urls } = await importsOf(['--log-level', 'warn', 'status', '--help']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('--max-staleness');
    expect(urls.filter((u) => /\/dist\/cli\/commands\/(?!index\.js)/.test(u))).toEqual([
      expect.stringMatching(/\/dist\/cli\/commands\/status\.js$/),
    ]);
    for (const heavy of [
      /prom-client/,
      /node-pg-migrate/,
      /\/dist\/daemon\/daemon\.js$/,
      /\/dist\/verify\//,
    ])
      expect(urls.filter((u) => heavy.test(u))).toEqual([]);
  });

  it('lists each command under the name and description of its module', async () => {
    for (const entry of COMMANDS) {
      const module = await entry.load();
      expect(module.command, entry.name).toBe(entry.name);
      expect(module.describe, entry.name).toBe(entry.describe);
    }
  });

  it("shows examples in each command's --help, using only flags the command has", async () => {
    for (const entry of COMMANDS) {
      const help = await runCli([entry.name, '--help']);
      expect(help.code, entry.name).toBe(0);
      expect(help.stdout, entry.name).toContain('Examples:');
      // Each example against the help of the (sub)command it runs: its words before the flags.
      const helps = new Map<string, string>();
      for (const [line] of entry.examples ?? []) {
        const words = line.split(' ').slice(1);
        const firstFlag = words.findIndex((w) => w.startsWith('-'));
        const prefix = firstFlag === -1 ? words : words.slice(0, firstFlag);
        const key = prefix.join(' ');
        if (!helps.has(key)) helps.set(key, (await runCli([...prefix, '--help'])).stdout);
        for (const flag of line.match(/--[a-z][a-z-]*/g) ?? []) {
          expect(helps.get(key), `${line}: ${flag}`).toMatch(new RegExp(`^\\s+${flag}\\b`, 'm'));
        }
      }
    }
  }, 300_000);

  it('finds the command after the global flags and their values', () => {
    expect(invokedCommand(['status'])).toBe('status');
    expect(invokedCommand(['--log-level', 'warn', 'status', '--json'])).toBe('status');
    expect(invokedCommand(['--database-url', 'postgres://h/db', 'migrate', 'up'])).toBe('migrate');
    expect(invokedCommand(['--log-level=warn', 'refresh'])).toBe('refresh');
    expect(invokedCommand(['--help'])).toBeUndefined();
    expect(invokedCommand(['-h'])).toBeUndefined();
    expect(invokedCommand([])).toBeUndefined();
  });

  it('exits 2, running nothing, for a command it could not find before its flags', async () => {
    const result = await runNode([CLI_PATH, '--no-such-flag', 'status']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
  });
});
