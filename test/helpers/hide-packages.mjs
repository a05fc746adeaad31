// Module hooks that make packages look not installed: importing a package named in
// HIDE_PACKAGES (comma-separated) fails as Node fails for a missing package. Registered with
// `node --import data:text/javascript,...register(<this file>)` (see test/public-api.test.ts).
export async function resolve(specifier, context, nextResolve) {
  const hidden = (process.env.HIDE_PACKAGES ?? '').split(',').filter(Boolean);
  if (hidden.some((name) => specifier === name || specifier.startsWith(`${name}/`))) {
    const error = new Error(
      `Cannot find package '${specifier}' imported from ${context.parentURL ?? 'the command line'}`,
    );
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return nextResolve(specifier, context);
}
