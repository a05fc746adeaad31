// Small, well-defined operations on SQL text: quoting, splitting a script into statements, and
// the two rewrites repair and verify need (CONCURRENTLY on or off for CREATE INDEX; a function
// header pointed at another schema). Nothing here parses SQL beyond statement boundaries.

/** Quotes an identifier the way PostgreSQL's `quote_ident` does (always quoting is also valid). */
export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a string literal (standard_conforming_strings, the default since PostgreSQL 9.1). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Splits a script into statements at top-level semicolons, dropping comments. Quotes
 * ('...', "...", $tag$...$tag$) are kept intact, so function bodies stay one statement.
 */
export function splitSqlStatements(script: string): string[] {
  const statements: string[] = [];
  let current = '';
  let i = 0;
  while (i < script.length) {
    const rest = script.slice(i);
    const ch = script[i]!;
    if (rest.startsWith('--')) {
      const end = script.indexOf('\n', i);
      i = end === -1 ? script.length : end;
      continue;
    }
    if (rest.startsWith('/*')) {
      const end = script.indexOf('*/', i + 2);
      i = end === -1 ? script.length : end + 2;
      current += ' ';
      continue;
    }
    const dollar = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(rest);
    if (dollar) {
      const tag = dollar[0];
      const end = script.indexOf(tag, i + tag.length);
      const stop = end === -1 ? script.length : end + tag.length;
      current += script.slice(i, stop);
      i = stop;
      continue;
    }
    if (ch === "'" || ch === '"') {
      let j = i + 1;
      for (;;) {
        const k = script.indexOf(ch, j);
        if (k === -1) {
          j = script.length;
          break;
        }
        // A doubled quote is an escaped quote, not the end.
        if (script[k + 1] === ch) {
          j = k + 2;
          continue;
        }
        j = k + 1;
        break;
      }
      current += script.slice(i, j);
      i = j;
      continue;
    }
    if (ch === ';') {
      if (current.trim()) statements.push(current.trim());
      current = '';
      i++;
      continue;
    }
    current += ch;
    i++;
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}

const CREATE_INDEX = /^(\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+)(CONCURRENTLY\s+)?/i;

/** `CREATE [UNIQUE] INDEX CONCURRENTLY ...`: builds without blocking writes (not in a transaction). */
export function concurrentIndexSql(createIndex: string): string {
  return createIndex.replace(CREATE_INDEX, (_all, head: string) => `${head}CONCURRENTLY `);
}

/** `CREATE [UNIQUE] INDEX ...` without CONCURRENTLY: for use inside a transaction. */
export function plainIndexSql(createIndex: string): string {
  return createIndex.replace(CREATE_INDEX, (_all, head: string) => head);
}

const FUNCTION_HEADER =
  /^(\s*)CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(?:[A-Za-z_][\w$]*\.)?([A-Za-z_][\w$]*)\s*\(/i;

/** The name a `CREATE [OR REPLACE] FUNCTION name(` statement defines. */
export function functionNameOf(definition: string): string {
  const match = FUNCTION_HEADER.exec(definition);
  if (!match) throw new Error(`not a CREATE FUNCTION statement: ${definition.slice(0, 60)}`);
  return match[2]!;
}

/**
 * The same function definition with its header rewritten to `CREATE [OR REPLACE] FUNCTION
 * <schema>.<name>(`; the body and options are untouched.
 */
export function retargetFunction(
  definition: string,
  options: { schema: string; orReplace: boolean },
): string {
  return definition.replace(
    FUNCTION_HEADER,
    (_all, indent: string, name: string) =>
      `${indent}CREATE ${options.orReplace ? 'OR REPLACE ' : ''}FUNCTION ${options.schema}.${quoteIdent(name)}(`,
  );
}

/** Normalises `pg_get_indexdef`/`pg_get_triggerdef` output so the table's schema does not matter. */
export function withoutTableName(definition: string): string {
  return definition.replace(/ ON (ONLY )?\S+ /, ' ON $1<table> ');
}
