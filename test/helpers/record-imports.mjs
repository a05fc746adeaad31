// Module hooks for tests of what a process imports: every module URL that is resolved is
// appended, one per line, to the file named by IMPORT_LOG_FILE. Registered with
// `node --import data:text/javascript,...register(<this file>)` (see test/cli/lazy-commands.test.ts).
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, nextResolve) {
  const result = await nextResolve(specifier, context);
  if (process.env.IMPORT_LOG_FILE) appendFileSync(process.env.IMPORT_LOG_FILE, `${result.url}\n`);
  return result;
}
