import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Global setup of both test projects: the CLI tests run the compiled CLI in dist/ (what ships),
 * so dist/ is rebuilt first when a source changed since the last build (scripts/build.mjs).
 */
export default function setup(): void {
  const script = fileURLToPath(new URL('../scripts/build.mjs', import.meta.url));
  const result = spawnSync(process.execPath, [script, '--if-stale'], {
    stdio: ['ignore', 'inherit', 'inherit'],
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(
      `building dist/ failed (exit ${result.status ?? result.signal}); run \`npm run build\` to see why`,
    );
  }
}
