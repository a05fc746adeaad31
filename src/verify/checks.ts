import type { MigrationStatus } from '../migrate/migrator.ts';
import type {
  FunctionAttributes,
  IndexFact,
  RelationFact,
  RelationInfo,
  SchemaFacts,
} from './schema-inspector.ts';

/**
 * What `repair` may do about a failed check. Only derived objects appear here: `entities`, its
 * constraints and data, the extensions, the bookkeeping tables and the migrations are never
 * repaired (their checks carry no repair, and name the command that fixes them).
 */
export type Repair =
  /** CREATE OR REPLACE from `sql/functions/`; `drop` first when REPLACE cannot change it. */
  | { kind: 'function'; name: string; drop: string | null }
  /** CREATE OR REPLACE VIEW from `sql/views/`. */
  | { kind: 'definition'; name: string }
  /** Drop (if present) and create from `sql/triggers/`, then enable or disable it. */
  | { kind: 'trigger'; name: string; enable: boolean }
  /** Enable or disable a trigger. */
  | { kind: 'trigger-state'; name: string; enable: boolean }
  /** Build beside and swap (hierarchy_rebuild_view), with its indexes and grants. */
  | { kind: 'rebuild'; view: string }
  /** An index on `entities`: build it, rebuild a drifted one, or reindex an invalid one. */
  | { kind: 'index'; name: string; how: 'create' | 'recreate' | 'reindex' }
  /** Give an object back to the owner of `entities`. */
  | { kind: 'owner'; type: 'ROUTINE' | 'TABLE' | 'MATERIALIZED VIEW'; object: string }
  /** Run `sql/grants.sql`. */
  | { kind: 'grants' };

/** One item of the checklist. */
export interface CheckResult {
  /** Names the object, e.g. `index entities_depth_path_gist`. */
  name: string;
  ok: boolean;
  detail: string;
  /** The command that fixes it; null when the check passes. */
  fix: string | null;
  /** What `repair` would do; empty when it passes or `repair` must not touch it. */
  repairs: Repair[];
  /** `verify --data`: how the view's contents differ from its definition. */
  differences?: DataDifferences;
}

/** How a view's contents differ from its definition view, in one snapshot. */
export interface DataDifferences {
  /** Rows of the definition, and of the view. */
  expected_rows: number;
  rows: number;
  /** Rows the definition has and the view lacks, the reverse, and rows whose contents differ. */
  missing: number;
  extra: number;
  changed: number;
  /** Changes not yet reflected in the view (they explain differences); null if unknown. */
  pending_changes: number | null;
  /** The first differing rows by entity_id (at most 20). */
  sample: {
    entity_id: string;
    kind: 'missing' | 'extra' | 'changed';
    expected: unknown;
    actual: unknown;
  }[];
}

/** The command line that repairs derived objects. */
export const REPAIR_COMMAND = 'hierarchy-db repair';

/** An index the contract requires (docs: README "Concepts"). */
export interface IndexSpec {
  name: string;
  table: string;
  method: string;
  columns: string[];
  unique?: boolean;
  /** It backs a constraint of `entities`: restored with the table, not by `repair`. */
  constraint?: boolean;
}

/** The indexes of `entities` (created by the migrations). */
export const ENTITIES_INDEXES: IndexSpec[] = [
  {
    name: 'entities_path_key',
    table: 'entities',
    method: 'btree',
    columns: ['path'],
    unique: true,
    constraint: true,
  },
  { name: 'entities_path_gist', table: 'entities', method: 'gist', columns: ['path'] },
  // The composite GiST needs btree_gist for the integer column.
  {
    name: 'entities_depth_path_gist',
    table: 'entities',
    method: 'gist',
    columns: ['path_depth', 'path'],
  },
  {
    name: 'entities_parent_path_idx',
    table: 'entities',
    method: 'btree',
    columns: ['parent_path'],
  },
];

/** The three indexes hierarchy_rebuild_view gives each view (sql/functions/hierarchy_rebuild_view.sql). */
export function viewIndexes(view: string): IndexSpec[] {
  return [
    // No WHERE clause: REFRESH ... CONCURRENTLY and ON CONFLICT need it whole.
    {
      name: `${view}_entity_id_key`,
      table: view,
      method: 'btree',
      columns: ['entity_id'],
      unique: true,
    },
    { name: `${view}_path_gist`, table: view, method: 'gist', columns: ['path'] },
    {
      name: `${view}_depth_path_idx`,
      table: view,
      method: 'btree',
      columns: ['path_depth', 'path'],
    },
  ];
}

/** Row-capture triggers: enabled exactly while some view uses the incremental strategy. */
export const CAPTURE_TRIGGER_PREFIX = 'entities_capture_';

// The contract of the data tables (README "Concepts"): checked, never altered by `repair`.
const ENTITIES_COLUMNS: { name: string; type: string; generated?: string | null }[] = [
  { name: 'id', type: 'bigint' },
  { name: 'name', type: 'text' },
  { name: 'path', type: 'ltree' },
  { name: 'path_depth', type: 'integer', generated: 'nlevel(path)' },
  // The foreign key that makes orphans impossible hangs on it.
  { name: 'parent_path', type: 'ltree', generated: null },
  { name: 'confidence_score', type: 'double precision' },
  { name: 'is_active', type: 'boolean' },
  { name: 'created_at', type: 'timestamp with time zone' },
  { name: 'updated_at', type: 'timestamp with time zone' },
];
const NOT_NULL = new Set([
  'id',
  'name',
  'path',
  'confidence_score',
  'is_active',
  'created_at',
  'updated_at',
]);
const TABLE_COLUMNS: Record<string, string> = {
  hierarchy_changes: 'xid changed_at',
  hierarchy_change_rows:
    'xid entity_id old_path new_path old_active new_active name_changed score_changed',
  hierarchy_view_state: 'view_name strategy snapshot data_as_of last_refreshed_at',
  mv_refresh_audit:
    'id view_name trigger status reason method started_at finished_at duration_ms rows rows_changed ' +
    'staleness_ms pending_changes data_as_of error_code error_message application_name backend_pid',
};

const NOT_REPAIRED_TABLE =
  '`repair` never alters tables: restore it with a new migration (`hierarchy-db migrate create NAME`) or from a backup';
const MISSING_TABLE_FIX = 'hierarchy-db migrate up (on an empty schema), or restore a backup';
const SQL_FILE_FIX =
  'fix the failing checks above first (or the file in sql/), then `hierarchy-db verify` again';

const pass = (name: string, detail: string): CheckResult => ({
  name,
  ok: true,
  detail,
  fix: null,
  repairs: [],
});
const fail = (name: string, detail: string, fix: string, repairs: Repair[] = []): CheckResult => ({
  name,
  ok: false,
  detail,
  fix,
  repairs,
});
const repairable = (name: string, detail: string, ...repairs: Repair[]) =>
  fail(name, detail, REPAIR_COMMAND, repairs);
const oneLine = (text: string | null, max = 160) => {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
};

/** Builds the checklist (docs: README "hierarchy-db verify") from the inspected schema. */
export function buildChecks(facts: SchemaFacts, migrations: MigrationStatus): CheckResult[] {
  const owner = facts.relations.entities?.owner ?? null;
  const incremental = facts.views.filter((v) => v.strategy === 'incremental').map((v) => v.name);
  const indexes = [...ENTITIES_INDEXES, ...facts.views.flatMap((v) => viewIndexes(v.name))];
  return [
    ...Object.entries(facts.extensions).map(([name, version]) =>
      version
        ? pass(`extension ${name}`, `installed (version ${version})`)
        : fail(
            `extension ${name}`,
            'not installed',
            `CREATE EXTENSION IF NOT EXISTS ${name}; (as a role allowed to create extensions)`,
          ),
    ),
    entitiesCheck(facts.relations.entities ?? null),
    constraintsCheck(facts),
    ...Object.entries(TABLE_COLUMNS).map(([table, columns]) =>
      tableCheck(table, facts.relations[table] ?? null, columns.split(' ')),
    ),
    ...indexes.map((spec) => indexCheck(spec, facts)),
    otherInvalidIndexesCheck(facts, indexes),
    ...facts.definitions.map((d) => {
      const name = `view ${d.file.name}`;
      const dependent = facts.views
        .filter((v) => v.definition === d.file.name)
        .map((v) => ({ kind: 'rebuild', view: v.name }) as const);
      if (!d.canonical.ok)
        return fail(name, `cannot render ${d.file.file}: ${d.canonical.error}`, SQL_FILE_FIX);
      if (d.live === null)
        return repairable(
          name,
          `missing (${d.file.file})`,
          { kind: 'definition', name: d.file.name },
          ...dependent,
        );
      return d.live === d.canonical.value.query
        ? pass(name, `matches ${d.file.file}`)
        : repairable(
            name,
            `drifted from ${d.file.file} (live: ${oneLine(d.live)})`,
            { kind: 'definition', name: d.file.name },
            ...dependent,
          );
    }),
    ...facts.views.map((view) => relationCheck(view, facts, owner)),
    ...facts.functions.map((fn) => {
      if (!fn.canonical.ok)
        return fail(
          `function ${fn.file.name}`,
          `cannot render ${fn.file.file}: ${fn.canonical.error}`,
          SQL_FILE_FIX,
        );
      const expected = fn.canonical.value;
      const name = `function ${expected.identity}`;
      const { live } = fn;
      if (!live) {
        const others = fn.others.length ? ` (found only ${fn.others.join(', ')})` : '';
        return repairable(name, `missing${others}`, {
          kind: 'function',
          name: fn.file.name,
          drop: null,
        });
      }
      const differences = functionDifferences(live, expected);
      const repairs: Repair[] = [];
      if (differences.length > 0) {
        // CREATE OR REPLACE cannot change the result type, argument names or defaults.
        const replaceable =
          live.result === expected.result && live.arguments === expected.arguments;
        repairs.push({
          kind: 'function',
          name: fn.file.name,
          drop: replaceable ? null : live.identity,
        });
      }
      if (live.securityDefiner && owner && live.owner !== owner) {
        differences.push(
          `owned by ${live.owner}, not by ${owner} (the owner of entities and the views)`,
        );
        repairs.push({ kind: 'owner', type: 'ROUTINE', object: live.identity });
      }
      const traits = [
        expected.securityDefiner ? 'SECURITY DEFINER' : null,
        pinnedPath(expected.config),
      ].filter(Boolean);
      return differences.length === 0
        ? pass(name, `matches ${fn.file.file}${traits.length ? ` (${traits.join(', ')})` : ''}`)
        : fail(
            name,
            `drifted from ${fn.file.file}: ${differences.join('; ')}`,
            REPAIR_COMMAND,
            repairs,
          );
    }),
    publicExecuteCheck(facts),
    ...facts.triggers.map((trigger) => {
      const name = `trigger ${trigger.file.name} on entities`;
      const capture = trigger.file.name.startsWith(CAPTURE_TRIGGER_PREFIX);
      const enable = !capture || incremental.length > 0;
      // Writes made while capture was off are missing from the incremental tables: rebuild them.
      const rebuilds = capture
        ? incremental.map((view) => ({ kind: 'rebuild', view }) as const)
        : [];
      const { live, canonical } = trigger;
      if (!canonical.ok)
        return fail(name, `cannot render ${trigger.file.file}: ${canonical.error}`, SQL_FILE_FIX);
      const recreate = { kind: 'trigger', name: trigger.file.name, enable } as const;
      if (!live) return repairable(name, 'missing', recreate, ...rebuilds);
      if (live.definition !== canonical.value) {
        return repairable(
          name,
          `drifted from ${trigger.file.file}: has \`${live.definition}\``,
          recreate,
          ...rebuilds,
        );
      }
      const enabled = live.enabled === 'O' || live.enabled === 'A';
      const state =
        {
          O: 'enabled',
          A: 'enabled (ALWAYS)',
          R: 'fires only under session_replication_role = replica',
          D: 'disabled',
        }[live.enabled] ?? live.enabled;
      const why = capture
        ? enable
          ? `; ${incremental.join(', ')} use the incremental strategy`
          : '; no view uses the incremental strategy'
        : '';
      return enabled === enable
        ? pass(name, `installed and ${state}${why}`)
        : repairable(
            name,
            `installed but ${state}${why}`,
            { kind: 'trigger-state', name: trigger.file.name, enable },
            ...rebuilds,
          );
    }),
    grantsCheck(facts),
    ...migrationChecks(migrations),
  ];
}

function entitiesCheck(table: RelationInfo | null): CheckResult {
  const name = 'table entities';
  if (!table) return fail(name, 'missing', MISSING_TABLE_FIX);
  if (table.kind !== 'r')
    return fail(name, `entities is not a table (relkind ${table.kind})`, NOT_REPAIRED_TABLE);
  const problems: string[] = [];
  for (const expected of ENTITIES_COLUMNS) {
    const column = table.columns.find((c) => c.name === expected.name);
    if (!column) {
      problems.push(`column ${expected.name} missing`);
      continue;
    }
    if (column.type !== expected.type)
      problems.push(`${expected.name} is ${column.type}, expected ${expected.type}`);
    if (NOT_NULL.has(expected.name) && !column.notNull)
      problems.push(`${expected.name} is nullable`);
    if (expected.generated !== undefined && column.generated !== 's') {
      problems.push(`${expected.name} is not a stored generated column`);
    } else if (expected.generated && column.expression !== expected.generated) {
      problems.push(
        `${expected.name} is generated as ${column.expression}, expected ${expected.generated}`,
      );
    }
  }
  const have = table.columns.map((c) => c.name).join(', ');
  return problems.length === 0
    ? pass(name, `columns as the contract requires (${have})`)
    : fail(name, `${problems.join('; ')} (have: ${have})`, NOT_REPAIRED_TABLE);
}

function constraintsCheck(facts: SchemaFacts): CheckResult {
  const name = 'table entities constraints';
  if (!facts.relations.entities) return fail(name, 'table entities missing', MISSING_TABLE_FIX);
  const problems: string[] = [];
  const found: string[] = [];
  const want = (label: string, type: string, columns: string, referenced?: string) => {
    const match = facts.constraints.find(
      (c) =>
        c.type === type &&
        c.columns.join(', ') === columns &&
        (referenced === undefined || c.referenced === referenced),
    );
    if (!match) problems.push(`${label} missing`);
    else if (!match.validated)
      problems.push(`${match.name} is NOT VALID (not enforced on old rows)`);
    else found.push(`${label} (${match.name})`);
  };
  want('primary key (id)', 'p', 'id');
  want('unique (path)', 'u', 'path');
  want('foreign key (parent_path) -> entities (path)', 'f', 'parent_path', 'entities (path)');
  want('check on confidence_score', 'c', 'confidence_score');
  return problems.length === 0
    ? pass(name, found.join(', '))
    : fail(name, problems.join('; '), NOT_REPAIRED_TABLE);
}

function tableCheck(table: string, info: RelationInfo | null, columns: string[]): CheckResult {
  const name = `table ${table}`;
  if (!info)
    return fail(
      name,
      'missing',
      `${NOT_REPAIRED_TABLE}; \`hierarchy-db migrate up\` creates it on a fresh schema`,
    );
  const missing = columns.filter((c) => !info.columns.some((column) => column.name === c));
  return missing.length === 0
    ? pass(name, 'present')
    : fail(name, `columns missing: ${missing.join(', ')}`, NOT_REPAIRED_TABLE);
}

function describeIndex(spec: IndexSpec): string {
  return `${spec.unique ? 'unique ' : ''}${spec.method} (${spec.columns.join(', ')})${spec.unique ? ' without WHERE' : ''}`;
}

function indexCheck(spec: IndexSpec, facts: SchemaFacts): CheckResult {
  const name = `index ${spec.name}`;
  const view = facts.views.some((v) => v.name === spec.table);
  const live = facts.indexes.find((i) => i.name === spec.name && i.table === spec.table);
  const fixBy = (how: 'create' | 'recreate' | 'reindex', detail: string): CheckResult => {
    if (view) return repairable(name, detail, { kind: 'rebuild', view: spec.table });
    if (spec.constraint && how !== 'reindex')
      return fail(name, `${detail} (it backs a constraint of ${spec.table})`, NOT_REPAIRED_TABLE);
    return repairable(name, detail, { kind: 'index', name: spec.name, how });
  };
  if (!facts.relations[spec.table]) {
    return view
      ? fixBy('create', `${spec.table} missing`)
      : fail(name, `table ${spec.table} missing`, MISSING_TABLE_FIX);
  }
  if (!live) return fixBy('create', `missing on ${spec.table}`);
  const shaped = (i: IndexFact) =>
    i.method === spec.method &&
    i.columns.join(', ') === spec.columns.join(', ') &&
    i.unique === (spec.unique ?? false) &&
    !i.partial;
  if (!shaped(live))
    return fixBy(
      'recreate',
      `drifted: has \`${live.definition}\`, expected ${describeIndex(spec)}`,
    );
  if (!live.valid || !live.ready) {
    const concurrently = live.unique && view ? ' and REFRESH ... CONCURRENTLY cannot use it' : '';
    return fixBy(
      'reindex',
      `invalid (indisvalid = ${live.valid}, indisready = ${live.ready}): the planner ignores it${concurrently}`,
    );
  }
  const role = spec.unique && view ? ': REFRESH ... CONCURRENTLY can use it' : '';
  return pass(name, `valid, ${describeIndex(spec)} on ${spec.table}${role}`);
}

function otherInvalidIndexesCheck(facts: SchemaFacts, specs: IndexSpec[]): CheckResult {
  const name = 'no other invalid indexes';
  const known = new Set(specs.map((s) => s.name));
  const invalid = facts.indexes.filter((i) => !known.has(i.name) && !(i.valid && i.ready));
  if (invalid.length === 0) return pass(name, 'no invalid index on the hierarchy tables and views');
  // Typically the leftover of a failed CREATE/REINDEX ... CONCURRENTLY (`*_ccnew`): not ours to
  // guess whether to rebuild or drop it.
  return fail(
    name,
    `invalid: ${invalid.map((i) => `${i.name} on ${i.table}`).join(', ')} (often the leftover of a failed CONCURRENTLY build)`,
    `DROP INDEX CONCURRENTLY ${invalid[0]!.name}; (or REINDEX INDEX CONCURRENTLY it if it is wanted)`,
  );
}

const KINDS: Record<string, string> = { m: 'a materialized view', r: 'a table', v: 'a plain view' };

function relationCheck(view: RelationFact, facts: SchemaFacts, owner: string | null): CheckResult {
  const name = `relation ${view.name}`;
  const rebuild = { kind: 'rebuild', view: view.name } as const;
  const { live, strategy } = view;
  const wanted = strategy === 'incremental' ? 'r' : 'm';
  if (!live) return repairable(name, `missing (strategy ${strategy})`, rebuild);
  const kind = KINDS[live.kind] ?? `relkind ${live.kind}`;
  if (live.kind !== 'm' && live.kind !== 'r') {
    return fail(
      name,
      `${view.name} is ${kind}`,
      `rename or drop the ${kind.replace(/^an? /, '')}, then ${REPAIR_COMMAND}`,
    );
  }
  const problems: string[] = [];
  if (live.kind !== wanted) problems.push(`is ${kind}, but its recorded strategy is ${strategy}`);
  if (!live.populated)
    problems.push('not populated (SELECT fails; REFRESH ... CONCURRENTLY needs a populated view)');
  const definition = facts.definitions.find((d) => d.file.name === view.definition);
  const columns = live.columns.map((c) => `${c.name} ${c.type}`).join(', ');
  if (definition?.canonical.ok && columns !== definition.canonical.value.columns.join(', ')) {
    problems.push(
      `columns drifted: has (${columns}), ${definition.file.file} defines (${definition.canonical.value.columns.join(', ')})`,
    );
  }
  if (live.kind === 'm') {
    if (!view.expectedQuery.ok)
      problems.push(`cannot check its query: ${view.expectedQuery.error}`);
    else if (live.query !== view.expectedQuery.value) {
      problems.push(
        `drifted: does not select from ${view.definition} (live: ${oneLine(live.query)})`,
      );
    }
  }
  const repairs: Repair[] = problems.length ? [rebuild] : [];
  if (owner && live.owner !== owner) {
    problems.push(
      `owned by ${live.owner}, not by ${owner} (the owner of entities, who runs refresh_hierarchy_views())`,
    );
    if (!repairs.length)
      repairs.push({
        kind: 'owner',
        type: live.kind === 'm' ? 'MATERIALIZED VIEW' : 'TABLE',
        object: view.name,
      });
  }
  return problems.length === 0
    ? pass(
        name,
        `${kind} (strategy ${strategy}), populated, reads ${view.definition}, owned by ${live.owner}`,
      )
    : fail(name, problems.join('; '), REPAIR_COMMAND, repairs);
}

function pinnedPath(config: string[] | null): string | null {
  return config?.find((c) => c.startsWith('search_path=')) ?? null;
}

/** Collapses whitespace: a body reindented (or checked out with CRLF) is the same body. */
const normalized = (text: string) => text.replace(/\s+/g, ' ').trim();

function functionDifferences(live: FunctionAttributes, expected: FunctionAttributes): string[] {
  const differences: string[] = [];
  if (expected.securityDefiner !== live.securityDefiner) {
    differences.push(expected.securityDefiner ? 'not SECURITY DEFINER' : 'SECURITY DEFINER');
  }
  const pin = pinnedPath(expected.config);
  const livePin = pinnedPath(live.config);
  if (pin && !livePin) differences.push(`search_path not pinned (expected ${pin})`);
  else if (pin !== livePin)
    differences.push(`${livePin ?? 'search_path not set'}, expected ${pin ?? 'none'}`);
  else if (live.securityDefiner && !livePin)
    differences.push('SECURITY DEFINER without a pinned search_path');
  const others = (c: string[] | null) =>
    (c ?? []).filter((x) => !x.startsWith('search_path=')).join(', ');
  if (others(live.config) !== others(expected.config))
    differences.push(`settings ${others(live.config) || 'none'}`);
  if (normalized(live.body) !== normalized(expected.body)) differences.push('body differs');
  const simple = [
    'arguments',
    'result',
    'language',
    'kind',
    'volatility',
    'strict',
    'leakproof',
    'parallel',
    'cost',
    'rows',
  ] as const;
  for (const key of simple) {
    if (live[key] !== expected[key])
      differences.push(`${key} ${String(live[key])}, expected ${String(expected[key])}`);
  }
  return differences;
}

function publicExecuteCheck(facts: SchemaFacts): CheckResult {
  const name = 'no EXECUTE for PUBLIC';
  // Trigger functions are exempt: PostgreSQL refuses to call them other than as triggers.
  const open = facts.functions.flatMap((f) =>
    f.live?.publicExecute && !f.live.returnsTrigger ? [f.live.identity] : [],
  );
  return open.length === 0
    ? pass(name, 'no function of sql/functions/ is executable by PUBLIC')
    : repairable(name, `PUBLIC may EXECUTE ${open.join(', ')}`, { kind: 'grants' });
}

function grantsCheck(facts: SchemaFacts): CheckResult {
  const name = 'grants';
  const { grants } = facts;
  if (!grants.ok)
    return repairable(name, `cannot apply grants.sql: ${grants.error}`, { kind: 'grants' });
  const { missing, extra, roles } = grants.value;
  if (missing.length === 0 && extra.length === 0) {
    return pass(
      name,
      roles.length
        ? `as grants.sql gives them to ${roles.join(', ')}`
        : 'as grants.sql gives them (its roles do not exist)',
    );
  }
  const parts = [
    missing.length ? `missing: ${missing.join('; ')}` : null,
    extra.length ? `not given by grants.sql: ${extra.join('; ')}` : null,
  ];
  return repairable(name, parts.filter(Boolean).join('; '), { kind: 'grants' });
}

function migrationChecks(status: MigrationStatus): CheckResult[] {
  const changed = [...status.modified, ...status.missing.map((m) => `${m} (file missing)`)];
  return [
    status.pending.length === 0
      ? pass('migrations applied', `${status.applied.length} applied, none pending`)
      : fail(
          'migrations applied',
          `pending: ${status.pending.join(', ')}`,
          'hierarchy-db migrate up',
        ),
    changed.length === 0
      ? pass('migrations unmodified', 'every applied migration matches its file')
      : fail(
          'migrations unmodified',
          `changed since applied: ${changed.join(', ')}`,
          'restore the released migration file(s); put changes in a new migration (`hierarchy-db migrate create NAME`)',
        ),
  ];
}
