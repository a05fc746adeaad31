import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH, type CliResult, runCli } from '../helpers/cli.ts';

const DEMO_TIMEOUT_MS = 120_000;

/** One row of a status table in the demo output. */
interface StatusRow {
  view: string;
  staleness_ms: number;
  pending: number;
}

/** The status tables under a caption, in order: `view populated staleness_ms pending ...`. */
function statusTableAfter(output: string, caption: string): StatusRow[] {
  const start = output.indexOf(caption);
  expect(start, `caption '${caption}' in the output`).toBeGreaterThanOrEqual(0);
  const rows: StatusRow[] = [];
  for (const line of output
    .slice(start + caption.length)
    .split('\n')
    .slice(1)) {
    const match = /^\s+(mv_\w+)\s+(?:yes|NO)\s+(\d+)\s+(\d+)\s/.exec(line);
    if (!match) {
      if (rows.length > 0 || !/^\s+view\s+populated/.test(line)) break;
      continue;
    }
    rows.push({ view: match[1]!, staleness_ms: Number(match[2]), pending: Number(match[3]) });
  }
  return rows;
}

function postgresProcessesOnPort(port: number): string[] {
  let ps: string;
  try {
    ps = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' });
  } catch {
    return [];
  }
  return ps.split('\n').filter((line) => /postgres/.test(line) && line.includes(`-p ${port} `));
}

describe('hierarchy-db demo', () => {
  let result: CliResult;
  let dataDir: string;
  let port: number;

  beforeAll(async () => {
    result = await runCli(['demo'], { timeoutMs: DEMO_TIMEOUT_MS });
    dataDir = /data in (\S+)/.exec(result.stdout)?.[1] ?? '';
    port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(result.stdout)?.[1]);
  }, DEMO_TIMEOUT_MS + 10_000);

  it('exits 0 within a minute, with quiet logs and no colors when piped', () => {
    expect(result.code, `stderr: ${result.stderr}\nstdout: ${result.stdout}`).toBe(0);
    expect(result.durationMs).toBeLessThan(60_000);
    // Logs default to warn in the demo: nothing on stderr when all goes well.
    expect(result.stderr).toBe('');
    expect(result.stdout).not.toContain('\x1b[');
  });

  it('shows both views stale with growing staleness after the move, then fresh after a refresh', () => {
    const first = statusTableAfter(result.stdout, 'right after the move:');
    const second = statusTableAfter(result.stdout, 'staleness (data age) has grown:');
    const fresh = statusTableAfter(result.stdout, 'fresh again:');
    for (const table of [first, second, fresh]) {
      expect(table.map((r) => r.view)).toEqual(['mv_entity_ancestors', 'mv_descendant_counts']);
    }
    for (const [i, row] of second.entries()) {
      expect(row.pending).toBeGreaterThan(0);
      expect(row.staleness_ms).toBeGreaterThan(0);
      expect(first[i]!.pending).toBeGreaterThan(0);
      // Printed about 1.5 s apart: the data age grew by about that much.
      expect(row.staleness_ms - first[i]!.staleness_ms).toBeGreaterThanOrEqual(1_000);
    }
    for (const row of fresh) {
      expect(row).toMatchObject({ staleness_ms: 0, pending: 0 });
    }
  });

  it("reads the moved node's new breadcrumb and descendant counts from the views", () => {
    const moved =
      /moved (.+?) \(id (\d+)\) and its subtree from under (.+?) to under (.+?): one UPDATE, (\d+) rows/.exec(
        result.stdout,
      );
    expect(moved, 'the move line').not.toBeNull();
    const [, node, , oldParent, newParent, rows] = moved!;
    expect(Number(rows)).toBeGreaterThan(1);

    // While stale, readers still get the old breadcrumb.
    expect(result.stdout).toMatch(
      new RegExp(`still see the old hierarchy: .*${oldParent} > ${node}\\n`),
    );
    const after = new RegExp(`breadcrumb of ${node} \\(mv_entity_ancestors\\): (.+)\\n`).exec(
      result.stdout,
    )?.[1];
    expect(after).toBeDefined();
    const names = after!.split(' > ');
    expect(names.slice(-2)).toEqual([newParent, node]);
    expect(names).not.toContain(oldParent);
    expect(names).toHaveLength(3);

    // The descendant-count table: `entity  role  before  after`.
    const counts = (role: string) => {
      const match = new RegExp(`^\\s+\\S.*\\s{2}${role}\\s+(\\d+)\\s+(\\d+)$`, 'm').exec(
        result.stdout,
      );
      expect(match, `the '${role}' row`).not.toBeNull();
      return { before: Number(match![1]), after: Number(match![2]) };
    };
    const movedNode = counts('moved node');
    const newParentCounts = counts('new parent');
    expect(movedNode.after).toBe(movedNode.before);
    // The new parent gained the moved node and its active descendants.
    expect(newParentCounts.after - newParentCounts.before).toBe(movedNode.after + 1);
  });

  it('switches to the incremental strategy and shows the same edit refreshed both ways', () => {
    expect(result.stdout).toContain('both views are now tables maintained from the change log');
    const back = /moved (.+?) back under (.+?): one UPDATE, (\d+) rows/.exec(result.stdout);
    expect(back, 'the move-back line').not.toBeNull();
    const [, node, oldParent] = back!;
    // The incremental refresh put the breadcrumb back where it was before the first move.
    expect(result.stdout).toMatch(
      new RegExp(`breadcrumb back where it started: .*${oldParent} > ${node}\\n`),
    );
    const row = (strategy: string) =>
      new RegExp(`^\\s+${strategy}\\s+(\\d+)\\s+(\\S+), (\\S+)\\s`, 'm').exec(result.stdout);
    expect(row('materialized')?.slice(2)).toEqual(['concurrent', 'concurrent']);
    expect(row('incremental')?.slice(2)).toEqual(['incremental', 'incremental']);
    expect(row('materialized')?.[1]).toBe(row('incremental')?.[1]); // the same number of rows moved
  });

  it('prints the SLO summary and the latest audit rows', () => {
    expect(result.stdout).toMatch(
      /ancestor resolution mean\s+<= 1\.25 ms\s+[\d.]+ ms\s+(PASSED|FAILED)/,
    );
    expect(result.stdout).toMatch(/ancestor resolution p95\s+<= 1\.87 ms\s+[\d.]+ ms/);
    expect(result.stdout).toMatch(
      /view refresh p95 \(audit\)\s+< 1000 ms\s+[\d.]+ ms\s+(PASSED|FAILED)/,
    );
    const history = result.stdout.slice(result.stdout.indexOf('refreshes in the audit'));
    expect(
      history.match(/mv_(entity_ancestors|descendant_counts)\s+manual\s+refreshed/g)?.length,
    ).toBeGreaterThanOrEqual(4);
  });

  it('stops the embedded PostgreSQL and deletes its data directory', () => {
    expect(dataDir).toMatch(/hierarchy-db-pg-/);
    expect(result.stdout).toContain(`stopped PostgreSQL and deleted ${dataDir}`);
    expect(existsSync(dataDir)).toBe(false);
    expect(port).toBeGreaterThan(0);
    expect(postgresProcessesOnPort(port)).toEqual([]);
  });
});

/** A demo run we can signal: resolves `waitFor(text)` once stdout shows it. */
function startDemo(args: string[]): {
  child: ChildProcess;
  stdout: () => string;
  waitFor: (text: string) => Promise<void>;
  exited: Promise<number | null>;
} {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (key === 'DATABASE_URL' || key.startsWith('PG') || key.startsWith('HIERARCHY_DB_'))
      delete env[key];
  }
  const child = spawn(process.execPath, [CLI_PATH, 'demo', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  child.stdout!.on('data', (chunk) => {
    stdout += chunk;
    for (const waiter of waiters.filter((w) => stdout.includes(w.text))) waiter.resolve();
  });
  child.stderr!.resume();
  const timer = setTimeout(() => child.kill('SIGKILL'), DEMO_TIMEOUT_MS);
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code);
    }),
  );
  return {
    child,
    stdout: () => stdout,
    exited,
    waitFor: (text) =>
      stdout.includes(text)
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiters.push({ text, resolve })),
            exited.then(() => {
              throw new Error(`demo exited before printing '${text}':\n${stdout}`);
            }),
          ]),
  };
}

function serverOf(stdout: string): { dataDir: string; port: number } {
  return {
    dataDir: /data in (\S+)/.exec(stdout)?.[1] ?? '',
    port: Number(/listening on 127\.0\.0\.1:(\d+)/.exec(stdout)?.[1]),
  };
}

describe('hierarchy-db demo on Ctrl-C', () => {
  it(
    'stops PostgreSQL and deletes its data when interrupted mid-story (exit 130)',
    async () => {
      const demo = startDemo([]);
      await demo.waitFor('Seed 10000 entities');
      demo.child.kill('SIGINT');
      expect(await demo.exited).toBe(130);
      const { dataDir, port } = serverOf(demo.stdout());
      expect(dataDir).toMatch(/hierarchy-db-pg-/);
      expect(demo.stdout()).toContain(`deleted ${dataDir}`);
      expect(existsSync(dataDir)).toBe(false);
      expect(postgresProcessesOnPort(port)).toEqual([]);
    },
    DEMO_TIMEOUT_MS,
  );

  it(
    '--keep leaves the database up for other commands until Ctrl-C, then cleans up (exit 0)',
    async () => {
      const demo = startDemo(['--keep']);
      await demo.waitFor('press Ctrl-C');
      const url = /connect with: (\S+)/.exec(demo.stdout())?.[1];
      expect(url).toMatch(/^postgres:\/\/.*@127\.0\.0\.1:\d+\//);
      const status = await runCli(['--database-url', url!, 'status', '--json']);
      expect(status.code).toBe(0);
      expect(JSON.parse(status.stdout).views).toHaveLength(2);

      demo.child.kill('SIGINT');
      expect(await demo.exited).toBe(0);
      const { dataDir, port } = serverOf(demo.stdout());
      expect(existsSync(dataDir)).toBe(false);
      expect(postgresProcessesOnPort(port)).toEqual([]);
    },
    DEMO_TIMEOUT_MS,
  );
});

describe('hierarchy-db demo failures', () => {
  let busy: Server;

  beforeAll(async () => {
    busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
    return () => new Promise<void>((resolve) => busy.close(() => resolve()));
  });

  it('says in one line that embedded PostgreSQL cannot start, and exits 1', async () => {
    const address = busy.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const result = await runCli(['demo', '--port', String(port), '--log-format', 'pretty']);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringMatching(
        new RegExp(`^hierarchy-db: embedded PostgreSQL cannot listen on 127\\.0\\.0\\.1:${port}`),
      ),
    ]);
  });

  it('documents --keep in --help', async () => {
    const result = await runCli(['demo', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/--keep\s+leave the database running/);
  });
});
