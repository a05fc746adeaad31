#!/usr/bin/env node
// In a checkout: runs the compiled CLI (dist/cli/main.js, the package's `bin`), built from src/
// by `npm run build`, which `npm ci` runs through the `prepare` script. Not shipped.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    'hierarchy-db: the compiled CLI (dist/) is missing; run `npm run build` in the hierarchy-db checkout\n',
  );
  process.exit(1);
}
await import(main.href);
