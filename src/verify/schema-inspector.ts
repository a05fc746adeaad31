import type pg from 'pg';
import { isConnectionFailure } from '../db/connection-error.ts';
import type { SqlDefinitions, SqlFile } from './sql-definitions.ts';

/** A canonical definition as PostgreSQL renders it, or why it could not be rendered. */
export type Rendered<T> = { ok: true; value: T } | { ok: false; error: string };

/** The relations readers query, each with the definition view both strategies read. */
export const VIEW_DEFINITIONS = {
  mv_entity_ancestors: 'hierarchy_ancestors_definition',
  mv_descendant_counts: 'hierarchy_descendant_counts_definition',
} as const;

/** Tables that hold data: owned by the migrations, checked, never recreated. */
export const DATA_TABLES =
  'entities hierarchy_changes hierarchy_change_rows hierarchy_view_state mv_refresh_audit'.split(
    ' ',
  );

/** A table, view or materialized view in the schema. */
export interface RelationInfo {
  kind: string;
  owner: string;
  populated: boolean;
  /** `name type[ not null][ generated expression]`, in column order. */
  columns: string[];
  /** `pg_get_viewdef` of a view or materialized view. */
  query: string | null;
}

/** A constraint of `entities`: `p`rimary, `u`nique, `f`oreign or `c`heck, on these columns. */
export interface ConstraintFact {
  name: string;
  type: string;
  validated: boolean;
  columns: string;
  referenced: string | null;
}

/** An index on one of the project's tables or views; `shape` e.g. `unique btree (entity_id)`. */
export interface IndexFact {
  name: string;
  table: string;
  valid: boolean;
  ready: boolean;
  shape: string;
  definition: string;
}

/** What is compared between a live function and its canonical definition. */
export interface FunctionAttributes {
  /** `name(argument types)`. */
  identity: string;
  securityDefiner: boolean;
  config: string[] | null;
  body: string;
  /** Arguments, result, language, kind, volatility, strictness, ... as the catalog has them. */
  traits: Record<string, string | number | boolean>;
}

/** A live function, with what is checked beyond its definition. */
export interface LiveFunction extends FunctionAttributes {
  owner: string;
  publicExecute: boolean;
}

/** A function of `sql/functions/`: the live one with its signature, and the canonical one. */
export interface FunctionFact {
  file: SqlFile;
  live: LiveFunction | null;
  /** Live functions of that name with other argument types. */
  others: string[];
  canonical: Rendered<FunctionAttributes>;
}

/** A definition view of `sql/views/`. */
export interface DefinitionFact {
  file: SqlFile;
  live: string | null;
  canonical: Rendered<{ query: string; columns: string[] }>;
}

/** A relation readers query: a materialized view or a table, by its recorded strategy. */
export interface RelationFact {
  name: keyof typeof VIEW_DEFINITIONS;
  definition: string;
  /** From hierarchy_view_state; `materialized` when no strategy is recorded. */
  strategy: string;
  live: RelationInfo | null;
  /** The query of the materialized view that selects from the live definition view. */
  expectedQuery: Rendered<string>;
}

/** A trigger of `sql/triggers/`, on `entities`. */
export interface TriggerFact {
  file: SqlFile;
  /** `tgenabled`: O (origin, the default), A (always), R (replica only), D (disabled). */
  live: { enabled: string; definition: string } | null;
  canonical: Rendered<string>;
}

/** Privileges that applying `grants.sql` would add or revoke. */
export interface GrantsDiff {
  missing: string[];
  extra: string[];
  roles: string[];
}

/** The live schema next to the canonical definitions, rendered by the server itself. */
export interface SchemaFacts {
  schema: string;
  /** `quote_ident(schema)`. */
  quotedSchema: string;
  currentUser: string;
  extensions: Record<string, string | null>;
  relations: Record<string, RelationInfo | null>;
  constraints: ConstraintFact[];
  indexes: IndexFact[];
  definitions: DefinitionFact[];
  views: RelationFact[];
  functions: FunctionFact[];
  triggers: TriggerFact[];
  grants: Rendered<GrantsDiff>;
}

/** The extensions `entities` needs. */
export const REQUIRED_EXTENSIONS = ['ltree', 'btree_gist'] as const;

// Bounds of the inspection: it waits for no lock for long, and renders in well under a minute.
const LOCK_TIMEOUT = '10s';
const STATEMENT_TIMEOUT = '60s';

const FUNCTIONS = `
  SELECT p.proname || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')' AS identity,
         p.prosecdef AS "securityDefiner", p.proconfig AS config,
         CASE WHEN p.prosqlbody IS NULL THEN p.prosrc ELSE pg_catalog.pg_get_function_sqlbody(p.oid) END AS body,
         json_build_object('arguments', pg_catalog.pg_get_function_arguments(p.oid),
                           'result', pg_catalog.pg_get_function_result(p.oid), 'language', l.lanname,
                           'kind', p.prokind, 'volatility', p.provolatile, 'strict', p.proisstrict,
                           'leakproof', p.proleakproof, 'parallel', p.proparallel,
                           'cost', p.procost, 'rows', p.prorows) AS traits,
         pg_catalog.pg_get_userbyid(p.proowner) AS owner,
         EXISTS (SELECT 1 FROM pg_catalog.aclexplode(COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE') AS "publicExecute"
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_language l ON l.oid = p.prolang`;

// Every privilege on the schema, its relations and its routines (NULL ACLs made explicit),
// with the REVOKE that takes a non-owner's privileges away.
const PRIVILEGES = `
  SELECT o.kind || ' ' || o.object AS object, a.privilege_type AS privilege,
         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END AS grantee,
         a.grantee = o.owner AS "isOwner",
         format('REVOKE ALL ON %s %s FROM %I CASCADE', o.kind, o.object, pg_catalog.pg_get_userbyid(a.grantee)) AS revoke
    FROM (SELECT 'SCHEMA' AS kind, quote_ident(n.nspname) AS object, n.nspowner AS owner,
                 COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner)) AS acl
            FROM pg_catalog.pg_namespace n WHERE n.oid = $1
          UNION ALL
          SELECT 'TABLE', quote_ident(c.relname), c.relowner, COALESCE(c.relacl, pg_catalog.acldefault('r', c.relowner))
            FROM pg_catalog.pg_class c WHERE c.relnamespace = $1 AND c.relkind IN ('r', 'p', 'v', 'm')
          UNION ALL
          SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text, p.proowner,
                 COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))
            FROM pg_catalog.pg_proc p WHERE p.pronamespace = $1) o
   CROSS JOIN LATERAL pg_catalog.aclexplode(o.acl) a`;

type Privilege = {
  object: string;
  privilege: string;
  grantee: string;
  isOwner: boolean;
  revoke: string;
};

/**
 * Reads the live schema (the session's `current_schema()`) and renders every canonical
 * definition of `sql/` through PostgreSQL itself, so the two are compared in the server's own
 * normal form, never as raw text. The files run unchanged with `pg_temp` first on the
 * search_path, so the views and functions they create are temporary; triggers go on a temporary
 * copy of `entities`; `grants.sql` runs against the live objects. All of it inside one
 * transaction that is rolled back: the live schema is only read. Needs the TEMP privilege, and
 * for the grants comparison, ownership of the objects (or superuser).
 */
export async function inspectSchema(client: pg.Client, sql: SqlDefinitions): Promise<SchemaFacts> {
  await client.query('BEGIN');
  try {
    const { rows } = await client.query<{
      schema: string | null;
      quoted: string;
      oid: number | null;
      user: string;
    }>(`SELECT current_schema() AS schema, quote_ident(current_schema()) AS quoted, current_user AS user,
               (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = current_schema())::int AS oid`);
    const { schema, quoted, oid: namespace, user } = rows[0]!;
    if (!schema || namespace === null) {
      throw new Error(
        'no schema to verify: search_path names no existing schema; set it (or the role default) to the schema the migrations ran in',
      );
    }
    // Unqualified CREATE statements then create in pg_temp, and `ON entities` resolves to a
    // temporary copy when there is one; functions are never looked up in pg_temp. Live and
    // canonical objects are rendered under this same path.
    await client.query(
      `SELECT set_config('search_path', format('pg_temp, %I', current_schema()), true),
              set_config('check_function_bodies', 'off', true),
              set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`,
      [LOCK_TIMEOUT, STATEMENT_TIMEOUT],
    );
    const live = await readLive(client, namespace, sql);
    // FROM CURRENT pins the search_path the file ran under; the convention (sql/README.md) is
    // that whoever applies a file runs it under `<schema>, pg_temp`.
    const renderPath = `search_path=pg_temp, ${quoted}`;
    const appliedPath = `search_path=${quoted}, pg_temp`;

    const definitions: DefinitionFact[] = [];
    for (const file of sql.views) {
      const canonical = await rendered(client, async () => {
        await client.query(file.sql);
        const view = await tempView(client, file.name);
        if (!view) throw new Error(`${file.file} did not create view ${file.name}`);
        return view;
      });
      definitions.push({ file, live: live.relations[file.name]?.query ?? null, canonical });
    }

    const views: RelationFact[] = [];
    for (const [name, definition] of Object.entries(VIEW_DEFINITIONS)) {
      const expectedQuery = await rendered(client, async () => {
        await client.query(
          `CREATE TEMPORARY VIEW hdb_expected AS SELECT * FROM ${quoted}.${definition}`,
        );
        return (await tempView(client, 'hdb_expected'))!.query;
      });
      views.push({
        name: name as RelationFact['name'],
        definition,
        strategy: live.strategies.get(name) ?? 'materialized',
        live: live.relations[name] ?? null,
        expectedQuery,
      });
    }

    const functions: FunctionFact[] = [];
    for (const file of sql.functions) {
      const canonical = await rendered(client, async () => {
        await client.query(file.sql);
        const { rows } = await client.query<LiveFunction>(
          `${FUNCTIONS} WHERE p.pronamespace = pg_catalog.pg_my_temp_schema() AND p.proname = $1`,
          [file.name],
        );
        if (rows.length !== 1) throw new Error(`${file.file} did not create function ${file.name}`);
        const { owner: _o, publicExecute: _p, ...attributes } = rows[0]!;
        const config = attributes.config?.map((c) => (c === renderPath ? appliedPath : c)) ?? null;
        return { ...attributes, config };
      });
      const candidates = live.functions.filter((f) => f.identity.startsWith(`${file.name}(`));
      const match = canonical.ok
        ? candidates.find((f) => f.identity === canonical.value.identity)
        : candidates[0];
      const others = candidates.filter((f) => f !== match).map((f) => f.identity);
      functions.push({ file, live: match ?? null, others, canonical });
    }

    const triggerDefinitions = new Map<string, Rendered<string>>();
    const copy = await rendered(client, async () => {
      await client.query(`CREATE TEMPORARY TABLE entities (LIKE ${quoted}.entities)`);
      for (const file of sql.triggers) {
        triggerDefinitions.set(
          file.name,
          await rendered(client, async () => {
            await client.query(file.sql);
            const { rows } = await client.query<{ definition: string }>(
              `SELECT pg_catalog.pg_get_triggerdef(oid, true) AS definition FROM pg_catalog.pg_trigger
                WHERE tgrelid = 'pg_temp.entities'::regclass AND tgname = $1`,
              [file.name],
            );
            if (!rows[0])
              throw new Error(`${file.file} did not create trigger ${file.name} on entities`);
            return rows[0].definition;
          }),
        );
      }
    });
    const triggers = sql.triggers.map((file) => ({
      file,
      live: live.triggers.get(file.name) ?? null,
      canonical: triggerDefinitions.get(file.name) ?? {
        ok: false as const,
        error: copy.ok ? 'not rendered' : `cannot copy entities: ${copy.error}`,
      },
    }));

    const grants = await rendered(client, async () => {
      // GRANT and REVOKE by anyone else only warn and change nothing: the comparison would pass
      // without comparing anything.
      const { rows } = await client.query<{ may: boolean }>(
        `SELECT pg_has_role(c.relowner, 'MEMBER') AS may FROM pg_catalog.pg_class c
          WHERE c.relnamespace = $1::oid AND c.relname = 'entities'`,
        [namespace],
      );
      if (!rows[0]?.may) {
        throw new Error(`${user} does not own entities: run verify as its owner (or a superuser)`);
      }
      // What grants.sql alone gives: every non-owner, non-PUBLIC privilege taken away first
      // (PUBLIC keeps its defaults, which grants.sql revokes where it means to).
      for (const p of live.privileges) {
        if (!p.isOwner && p.grantee !== 'PUBLIC') await client.query(p.revoke);
      }
      await client.query(`SELECT set_config('search_path', $1, true)`, [`${quoted}, pg_temp`]);
      await client.query(sql.grants.sql);
      const after = await client.query<Privilege>(PRIVILEGES, [namespace]);
      return diffPrivileges(live.privileges, after.rows);
    });

    const { extensions, relations, constraints, indexes } = live;
    const rest = { extensions, relations, constraints, indexes, definitions, views, functions };
    return { schema, quotedSchema: quoted, currentUser: user, ...rest, triggers, grants };
  } finally {
    // Everything created or granted above is discarded here.
    await client.query('ROLLBACK').catch(() => {});
  }
}

function diffPrivileges(live: Privilege[], file: Privilege[]): GrantsDiff {
  const key = (p: Privilege) => `${p.privilege} on ${p.object.toLowerCase()} to ${p.grantee}`;
  const granted = file.filter((p) => !p.isOwner);
  const roles = new Set(granted.map((p) => p.grantee).filter((g) => g !== 'PUBLIC'));
  const liveKeys = new Set(live.filter((p) => !p.isOwner).map(key));
  const fileKeys = new Set(granted.map(key));
  return {
    missing: [...fileKeys].filter((k) => !liveKeys.has(k)).sort(),
    // Only for the roles grants.sql speaks of and PUBLIC: other roles' privileges are the DBA's.
    extra: live
      .filter((p) => !p.isOwner && (p.grantee === 'PUBLIC' || roles.has(p.grantee)))
      .map(key)
      .filter((k) => !fileKeys.has(k))
      .sort(),
    roles: [...roles].sort(),
  };
}

interface LiveState
  extends Pick<SchemaFacts, 'extensions' | 'relations' | 'constraints' | 'indexes'> {
  strategies: Map<string, string>;
  functions: LiveFunction[];
  triggers: Map<string, { enabled: string; definition: string }>;
  privileges: Privilege[];
}

async function readLive(
  client: pg.Client,
  namespace: number,
  sql: SqlDefinitions,
): Promise<LiveState> {
  const { rows: extensionRows } = await client.query<{ name: string; version: string }>(
    'SELECT extname AS name, extversion AS version FROM pg_catalog.pg_extension WHERE extname = ANY ($1)',
    [REQUIRED_EXTENSIONS],
  );
  const extensions = Object.fromEntries(
    REQUIRED_EXTENSIONS.map((n) => [n, extensionRows.find((r) => r.name === n)?.version ?? null]),
  );
  const names = [...DATA_TABLES, ...Object.keys(VIEW_DEFINITIONS), ...sql.views.map((v) => v.name)];
  const { rows: relationRows } = await client.query<RelationInfo & { name: string }>(
    `SELECT c.relname AS name, c.relkind::text AS kind, pg_catalog.pg_get_userbyid(c.relowner) AS owner,
            c.relispopulated AS populated,
            CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END AS query,
            ARRAY(SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) ||
                         CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ||
                         CASE WHEN a.attgenerated = 's'
                              THEN ' generated ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid) ELSE '' END
                    FROM pg_catalog.pg_attribute a
                    LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   ORDER BY a.attnum) AS columns
       FROM pg_catalog.pg_class c WHERE c.relnamespace = $1::oid AND c.relname = ANY ($2)`,
    [namespace, names],
  );
  const relations: Record<string, RelationInfo | null> = {};
  for (const n of names) relations[n] = relationRows.find((r) => r.name === n) ?? null;

  const strategies = new Map<string, string>();
  await rendered(client, async () => {
    const { rows } = await client.query<{ view: string; strategy: string }>(
      `SELECT view_name AS view, strategy FROM hierarchy_view_state`,
    );
    for (const r of rows) strategies.set(r.view, r.strategy);
  });

  const { rows: constraints } = await client.query<ConstraintFact>(
    `SELECT con.conname AS name, con.contype::text AS type, con.convalidated AS validated,
            (SELECT string_agg(a.attname, ', ' ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS columns,
            CASE WHEN con.confrelid <> 0 THEN con.confrelid::regclass::text || ' (' ||
              (SELECT string_agg(a.attname, ', ' ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) || ')'
            END AS referenced
       FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
      WHERE c.relnamespace = $1::oid AND c.relname = 'entities'`,
    [namespace],
  );
  const { rows: indexes } = await client.query<IndexFact>(
    `SELECT c.relname AS name, t.relname AS table, i.indisvalid AS valid, i.indisready AS ready,
            CASE WHEN i.indisunique THEN 'unique ' ELSE '' END || am.amname || ' (' ||
              (SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid, k, true), ', ' ORDER BY k)
                 FROM generate_series(1, i.indnkeyatts::int) k) || ')' ||
              COALESCE(' WHERE ' || pg_catalog.pg_get_expr(i.indpred, i.indrelid), '') AS shape,
            pg_catalog.pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
       JOIN pg_catalog.pg_class t ON t.oid = i.indrelid
       JOIN pg_catalog.pg_am am ON am.oid = c.relam
      WHERE t.relnamespace = $1::oid AND t.relname = ANY ($2)`,
    [namespace, [...DATA_TABLES, ...Object.keys(VIEW_DEFINITIONS)]],
  );

  const { rows: functions } = await client.query<LiveFunction>(
    `${FUNCTIONS} WHERE p.pronamespace = $1::oid AND p.proname = ANY ($2)`,
    [namespace, sql.functions.map((f) => f.name)],
  );

  const { rows: triggerRows } = await client.query<{
    name: string;
    enabled: string;
    definition: string;
  }>(
    `SELECT t.tgname AS name, t.tgenabled::text AS enabled,
            -- Pretty: names the table as seen from the search_path, as for the temporary copy.
            pg_catalog.pg_get_triggerdef(t.oid, true) AS definition
       FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
      WHERE c.relnamespace = $1::oid AND c.relname = 'entities' AND NOT t.tgisinternal`,
    [namespace],
  );
  const { rows: privileges } = await client.query<Privilege>(PRIVILEGES, [namespace]);
  return {
    extensions,
    relations,
    strategies,
    constraints,
    indexes,
    functions,
    triggers: new Map(
      triggerRows.map((t) => [t.name, { enabled: t.enabled, definition: t.definition }]),
    ),
    privileges,
  };
}

let savepoints = 0;

/** Runs `fn` inside a savepoint that is always rolled back; an error becomes `{ ok: false }`. */
async function rendered<T>(client: pg.Client, fn: () => Promise<T>): Promise<Rendered<T>> {
  const savepoint = `hdb_verify_${++savepoints}`;
  await client.query(`SAVEPOINT ${savepoint}`);
  try {
    const value = await fn();
    await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    return { ok: true, value };
  } catch (error) {
    if (isConnectionFailure(error)) throw error;
    await client.query(`ROLLBACK TO SAVEPOINT ${savepoint}`);
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, error: message.split('\n')[0] ?? message };
  }
}

/** A temporary view's query and its columns (`name type`). */
async function tempView(client: pg.Client, name: string) {
  const { rows } = await client.query<{ query: string; columns: string[] }>(
    `SELECT pg_catalog.pg_get_viewdef(c.oid) AS query,
            ARRAY(SELECT a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                    FROM pg_catalog.pg_attribute a
                   WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum) AS columns
       FROM pg_catalog.pg_class c
      WHERE c.relnamespace = pg_catalog.pg_my_temp_schema() AND c.relname = $1 AND c.relkind = 'v'`,
    [name],
  );
  return rows[0];
}
