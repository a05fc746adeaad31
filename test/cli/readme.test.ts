import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/cli.ts';

// The README is part of the product: every command and flag in its command reference must exist
// in the CLI's --help, and every command the CLI has must be documented.
const README = new URL('../../README.md', import.meta.url);

interface Usage {
  command: string;
  flags: string[];
}

async function readmeUsages(): Promise<Usage[]> {
  const text = await readFile(README, 'utf8');
  const start = text.indexOf('\n## Commands');
  const end = text.indexOf('\n## ', start + 1);
  expect(start).toBeGreaterThan(0);
  const section = text.slice(start, end);
  const usages: Usage[] = [];
  // Usage blocks are the fenced blocks without a language; continuation lines are indented.
  const blocks: string[] = [];
  let current: string[] | undefined;
  let plain = false;
  for (const line of section.split('\n')) {
    if (line.startsWith('```')) {
      if (current === undefined) {
        current = [];
        plain = line.trim() === '```';
      } else {
        if (plain) blocks.push(current.join('\n'));
        current = undefined;
      }
    } else if (current !== undefined) {
      current.push(line);
    }
  }
  for (const block of blocks) {
    const lines = block
      .replace(/\n\s+(?=\[)/g, ' ')
      .split('\n')
      .filter(Boolean);
    for (const line of lines) {
      const match =
        /^hierarchy-db ([a-z]+(?: (?:up|down|status|create|set-strategy))?)\b(.*)$/.exec(
          line.trim(),
        );
      if (!match) continue;
      usages.push({
        command: match[1]!,
        flags: [...(match[2] ?? '').matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]),
      });
    }
  }
  return usages;
}

describe('README command reference', () => {
  it('documents every command the CLI has', async () => {
    const help = await runCli(['--help']);
    const commands = [...help.stdout.matchAll(/^\s+hierarchy-db ([a-z]+)/gm)].map((m) => m[1]);
    expect(commands.length).toBeGreaterThanOrEqual(10);
    const documented = new Set((await readmeUsages()).map((u) => u.command.split(' ')[0]));
    for (const command of commands)
      expect(documented, `README lacks ${command}`).toContain(command);
  });

  it('lists only commands and flags that --help shows', async () => {
    const usages = await readmeUsages();
    expect(usages.length).toBeGreaterThanOrEqual(12);
    await Promise.all(
      usages.map(async (usage) => {
        const help = await runCli([...usage.command.split(' '), '--help']);
        expect(help.code, `${usage.command} --help`).toBe(0);
        for (const flag of usage.flags) {
          expect(help.stdout, `${usage.command} ${flag}`).toContain(flag);
        }
      }),
    );
  });

  it('runs the binary directly, never through npx or npm exec (they do not pass SIGTERM on)', async () => {
    const text = await readFile(README, 'utf8');
    expect(text).not.toMatch(/^\s*(?:npx|npm exec) hierarchy-db/m);
    expect(text).toContain('node_modules/.bin/hierarchy-db');
    const dockerfile = await readFile(new URL('../../deploy/Dockerfile', import.meta.url), 'utf8');
    const entrypoints = [...dockerfile.matchAll(/^ENTRYPOINT (.*)$/gm)].map((m) => m[1]);
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
    // node runs the bin itself, under tini as PID 1 (deploy/Dockerfile).
    expect(entrypoints).toEqual([`["/usr/bin/tini", "--", "node", "${pkg.bin['hierarchy-db']}"]`]);
  });
});
