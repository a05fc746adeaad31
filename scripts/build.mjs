#!/usr/bin/env node
// Compiles src/ to dist/ with tsconfig.build.json: JavaScript, declarations and source maps.
// `npm run build` (and `prepare`, so `npm ci` builds) runs it; the test suites' global setup runs
// it with --if-stale, which builds only when a source changed since the last build.
//
// The build goes to a directory of its own, then replaces dist/ in one rename: a CLI started
// meanwhile sees the old build or the new one, never half of one.
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DIST = join(ROOT, 'dist');
/** Written last; its mtime is when the build started (an edit during the build is newer). */
const STAMP = join(DIST, '.build-stamp');
const INPUTS = ['src', 'tsconfig.json', 'tsconfig.build.json'];

/** Newest mtime among the inputs, directories included (a deleted file changes its directory). */
function newestInput() {
  let newest = 0;
  const visit = (path) => {
    const stat = statSync(path);
    newest = Math.max(newest, stat.mtimeMs);
    if (stat.isDirectory()) for (const name of readdirSync(path)) visit(join(path, name));
  };
  for (const input of INPUTS) visit(join(ROOT, input));
  return newest;
}

/** Why dist/ needs a build, or null when it is up to date. */
export function staleReason() {
  if (!existsSync(STAMP)) return 'dist/ has not been built';
  return newestInput() > statSync(STAMP).mtimeMs ? 'sources changed since the last build' : null;
}

export function build() {
  const started = new Date();
  const out = join(ROOT, `dist.tmp-${process.pid}`);
  rmSync(out, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(
    process.execPath,
    [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out],
    { cwd: ROOT, stdio: 'inherit' },
  );
  if (result.status !== 0) {
    rmSync(out, { recursive: true, force: true });
    throw new Error(`tsc -p tsconfig.build.json failed (exit ${result.status ?? result.signal})`);
  }
  writeFileSync(join(out, '.build-stamp'), '');
  utimesSync(join(out, '.build-stamp'), started, started);
  rmSync(DIST, { recursive: true, force: true });
  renameSync(out, DIST);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const ifStale = process.argv.includes('--if-stale');
  const reason = staleReason();
  if (!ifStale || reason) {
    if (ifStale) process.stderr.write(`building dist/: ${reason}\n`);
    try {
      build();
    } catch (error) {
      process.stderr.write(`${error instanceof Error ? error.message : error}\n`);
      process.exit(1);
    }
  }
}
