import type { MigrationStatus } from '../migrate/migrator.ts';
import type { FunctionFact, RelationFact, SchemaFacts, TriggerFact } from './schema-inspector.ts';

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

/** An index the contract requires (README "Concepts"): name, table and shape. */
export type IndexSpec = [name: string, table: string, shape: string];

/** The indexes of `entities`, created by the migrations (the first backs a constraint). */
export const ENTITIES_INDEXES: IndexSpec[] = [
  ['entities_path_key', 'entities', 'unique btree (path)'],
  ['entities_path_gist', 'entities', 'gist (path)'],
  // The composite GiST needs btree_gist for the integer column.
  ['entities_depth_path_gist', 'entities', 'gist (path_depth, path)'],
  ['entities_parent_path_idx', 'entities', 'btree (parent_path)'],
];
const CONSTRAINT_INDEXES = new Set(['entities_path_key']);

/** The indexes hierarchy_rebuild_view gives each view (sql/functions/hierarchy_rebuild_view.sql). */
function viewIndexes(view: string): IndexSpec[] {
  return [
    // No WHERE clause: REFRESH ... CONCURRENTLY and ON CONFLICT need it whole.
    [`${view}_entity_id_key`, view, 'unique btree (entity_id)'],
    [`${view}_path_gist`, view, 'gist (path)'],
    [`${view}_depth_path_idx`, view, 'btree (path_depth, path)'],
  ];
}

/** Row-capture triggers: enabled exactly while some view uses the incremental strategy. */
export const CAPTURE_TRIGGER_PREFIX = 'entities_capture_';

// The contract of the data tables (README "Concepts"): each column as the catalog describes it,
// or its beginning. Checked, never altered by `repair`.
const TABLE_COLUMNS: Record<string, string[]> = {
  entities: [
    'id bigint not null',
    'name text not null',
    'path ltree not null',
    'path_depth integer generated nlevel(path)',
    // The foreign key that makes orphans impossible hangs on it.
    'parent_path ltree generated',
    'confidence_score double precision not null',
    'is_active boolean not null',
    'created_at timestamp with time zone not null',
    'updated_at timestamp with time zone not null',
  ],
  hierarchy_changes: ['xid', 'changed_at'],
  hierarchy_change_rows: 'xid entity_id old_path new_path old_active new_active'.split(' '),
  hierarchy_view_state: 'view_name strategy snapshot data_as_of last_refreshed_at'.split(' '),
  mv_refresh_audit: [
    ...'id view_name trigger status reason method started_at finished_at duration_ms'.split(' '),
    ...'rows rows_changed staleness_ms pending_changes data_as_of error_code'.split(' '),
    ...'error_message application_name backend_pid'.split(' '),
  ],
};

const NOT_REPAIRED =
  '`repair` never alters tables: restore it with a new migration (`hierarchy-db migrate create NAME`) or from a backup';
const MISSING_TABLE = 'hierarchy-db migrate up (on an empty schema), or restore a backup';
const SQL_FILE_FIX = 'fix the failing checks above first (or the file in sql/), then verify again';

function check(name: string, detail: string, fix: string | null, ...repairs: Repair[]) {
  return { name, ok: fix === null, detail, fix, repairs } satisfies CheckResult;
}
const pass = (name: string, detail: string) => check(name, detail, null);
const repairable = (name: string, detail: string, ...repairs: Repair[]) =>
  check(name, detail, REPAIR_COMMAND, ...repairs);
const oneLine = (text: string | null, max = 160) => {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
};
const TRIGGER_STATES: Record<string, string> = {
  O: 'enabled',
  A: 'enabled (ALWAYS)',
  R: 'fires only under session_replication_role = replica',
  D: 'disabled',
};

/** Builds the checklist (README "hierarchy-db verify") from the inspected schema. */
export function buildChecks(facts: SchemaFacts, migrations: MigrationStatus): CheckResult[] {
  const indexes = [...ENTITIES_INDEXES, ...facts.views.flatMap((v) => viewIndexes(v.name))];
  return [
    ...Object.entries(facts.extensions).map(([name, version]) =>
      version
        ? pass(`extension ${name}`, `installed (version ${version})`)
        : check(`extension ${name}`, 'not installed', `CREATE EXTENSION IF NOT EXISTS ${name};`),
    ),
    ...Object.entries(TABLE_COLUMNS).map(([table, columns]) => tableCheck(facts, table, columns)),
    constraintsCheck(facts),
    ...indexes.map((spec) => indexCheck(spec, facts)),
    otherInvalidIndexesCheck(facts, new Set(indexes.map(([name]) => name))),
    ...facts.definitions.map((d) => {
      const name = `view ${d.file.name}`;
      if (!d.canonical.ok)
        return check(name, `cannot render ${d.file.file}: ${d.canonical.error}`, SQL_FILE_FIX);
      // The relations read the definition: rebuilt from the restored one.
      const rebuilds = facts.views
        .filter((v) => v.definition === d.file.name)
        .map((v) => rebuild(v.name));
      const restore = [{ kind: 'definition', name: d.file.name } as const, ...rebuilds];
      if (d.live === null) return repairable(name, `missing (${d.file.file})`, ...restore);
      return d.live === d.canonical.value.query
        ? pass(name, `matches ${d.file.file}`)
        : repairable(name, `drifted from ${d.file.file} (live: ${oneLine(d.live)})`, ...restore);
    }),
    ...facts.views.map((view) => relationCheck(view, facts)),
    ...facts.functions.map((fn) => functionCheck(fn, facts)),
    publicExecuteCheck(facts),
    ...facts.triggers.map((trigger) => triggerCheck(trigger, facts)),
    grantsCheck(facts),
    ...migrationChecks(migrations),
  ];
}

const rebuild = (view: string) => ({ kind: 'rebuild', view }) as const;

function tableCheck(facts: SchemaFacts, table: string, columns: string[]): CheckResult {
  const name = `table ${table}`;
  const info = facts.relations[table];
  if (!info) return check(name, 'missing', MISSING_TABLE);
  if (info.kind !== 'r') return check(name, `not a table (relkind ${info.kind})`, NOT_REPAIRED);
  const has = (c: string) => info.columns.some((live) => live === c || live.startsWith(`${c} `));
  const wrong = columns.filter((c) => !has(c));
  if (wrong.length === 0) return pass(name, `columns as required (${columns.join(', ')})`);
  return check(
    name,
    `expected ${wrong.join(', ')} (have: ${info.columns.join(', ')})`,
    NOT_REPAIRED,
  );
}

/** CHECK constraints on the shape of a path (migrations/0006_entity_limits.sql). */
const PATH_LIMIT_CONSTRAINTS = [
  'entities_path_depth_limit',
  'entities_path_length_limit',
  'entities_path_label_length_limit',
];

function constraintsCheck(facts: SchemaFacts): CheckResult {
  const name = 'table entities constraints';
  if (!facts.relations.entities) return check(name, 'table entities missing', MISSING_TABLE);
  const problems: string[] = [];
  const found: string[] = [];
  const want = (label: string, type: string, columns: string, referenced: string | null = null) => {
    const match = facts.constraints.find(
      (c) =>
        c.type === type && c.columns === columns && (!referenced || c.referenced === referenced),
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
  // The path limits (docs/semantics.md, "Limits"), by name: all three are checks on `path`.
  for (const limit of PATH_LIMIT_CONSTRAINTS) {
    const match = facts.constraints.find((c) => c.type === 'c' && c.name === limit);
    if (!match) problems.push(`${limit} missing`);
    else if (!match.validated) problems.push(`${limit} is NOT VALID (not enforced on old rows)`);
    else found.push(limit);
  }
  return problems.length
    ? check(name, problems.join('; '), NOT_REPAIRED)
    : pass(name, found.join(', '));
}

function indexCheck([index, table, shape]: IndexSpec, facts: SchemaFacts): CheckResult {
  const name = `index ${index}`;
  const view = facts.views.some((v) => v.name === table);
  const live = facts.indexes.find((i) => i.name === index && i.table === table);
  const fixBy = (how: 'create' | 'recreate' | 'reindex', detail: string): CheckResult => {
    if (view) return repairable(name, detail, rebuild(table));
    if (CONSTRAINT_INDEXES.has(index) && how !== 'reindex') {
      return check(name, `${detail} (it backs a constraint of ${table})`, NOT_REPAIRED);
    }
    return repairable(name, detail, { kind: 'index', name: index, how });
  };
  if (!facts.relations[table]) {
    return view
      ? fixBy('create', `${table} missing`)
      : check(name, `${table} missing`, MISSING_TABLE);
  }
  if (!live) return fixBy('create', `missing on ${table}`);
  if (live.shape !== shape)
    return fixBy('recreate', `drifted: has \`${live.definition}\`, expected ${shape}`);
  if (!live.valid || !live.ready) {
    const concurrently =
      view && shape.startsWith('unique') ? ' and REFRESH ... CONCURRENTLY cannot use it' : '';
    return fixBy(
      'reindex',
      `invalid (indisvalid = ${live.valid}, indisready = ${live.ready}): the planner ignores it${concurrently}`,
    );
  }
  const role =
    view && shape.startsWith('unique') ? ', no WHERE: REFRESH ... CONCURRENTLY can use it' : '';
  return pass(name, `valid, ${shape} on ${table}${role}`);
}

function otherInvalidIndexesCheck(facts: SchemaFacts, known: Set<string>): CheckResult {
  const name = 'no other invalid indexes';
  const invalid = facts.indexes.filter((i) => !known.has(i.name) && !(i.valid && i.ready));
  if (invalid.length === 0) return pass(name, 'no invalid index on the hierarchy tables and views');
  // Typically the leftover of a failed CREATE/REINDEX ... CONCURRENTLY (`*_ccnew`): not ours to
  // guess whether to rebuild or drop it.
  const list = invalid.map((i) => `${i.name} on ${i.table}`).join(', ');
  return check(
    name,
    `invalid: ${list} (often the leftover of a failed CONCURRENTLY build)`,
    `DROP INDEX CONCURRENTLY ${invalid[0]!.name}; (or REINDEX INDEX CONCURRENTLY it if it is wanted)`,
  );
}

const KINDS: Record<string, string> = { m: 'a materialized view', r: 'a table', v: 'a plain view' };

function relationCheck(view: RelationFact, facts: SchemaFacts): CheckResult {
  const name = `relation ${view.name}`;
  const { live, strategy } = view;
  const owner = facts.relations.entities?.owner;
  if (!live) return repairable(name, `missing (strategy ${strategy})`, rebuild(view.name));
  const kind = KINDS[live.kind] ?? `relkind ${live.kind}`;
  if (live.kind !== 'm' && live.kind !== 'r') {
    return check(name, `${view.name} is ${kind}`, `rename or drop it, then ${REPAIR_COMMAND}`);
  }
  const problems: string[] = [];
  if (live.kind !== (strategy === 'incremental' ? 'r' : 'm')) {
    problems.push(`is ${kind}, but its recorded strategy is ${strategy}`);
  }
  if (!live.populated)
    problems.push('not populated (SELECT fails; REFRESH ... CONCURRENTLY needs a populated view)');
  const definition = facts.definitions.find((d) => d.file.name === view.definition);
  const expected = definition?.canonical.ok ? definition.canonical.value.columns.join(', ') : null;
  if (expected !== null && live.columns.join(', ') !== expected) {
    problems.push(
      `columns drifted: has (${live.columns.join(', ')}), ${definition!.file.file} defines (${expected})`,
    );
  }
  const query = view.expectedQuery;
  if (live.kind === 'm' && !query.ok) problems.push(`cannot check its query: ${query.error}`);
  else if (live.kind === 'm' && query.ok && live.query !== query.value) {
    problems.push(
      `drifted: does not select from ${view.definition} (live: ${oneLine(live.query)})`,
    );
  }
  const repairs: Repair[] = problems.length ? [rebuild(view.name)] : [];
  if (owner && live.owner !== owner) {
    problems.push(
      `owned by ${live.owner}, not by ${owner} (the owner of entities, who runs refresh_hierarchy_views())`,
    );
    const type = live.kind === 'm' ? 'MATERIALIZED VIEW' : 'TABLE';
    if (!repairs.length) repairs.push({ kind: 'owner', type, object: view.name });
  }
  if (problems.length) return repairable(name, problems.join('; '), ...repairs);
  return pass(
    name,
    `${kind} (strategy ${strategy}), populated, reads ${view.definition}, owned by ${live.owner}`,
  );
}

const pinnedPath = (config: string[] | null) =>
  config?.find((c) => c.startsWith('search_path=')) ?? null;
/** Collapses whitespace: a body reindented (or checked out with CRLF) is the same body. */
const normalized = (text: string) => text.replace(/\s+/g, ' ').trim();
function functionCheck(fn: FunctionFact, facts: SchemaFacts): CheckResult {
  if (!fn.canonical.ok) {
    return check(
      `function ${fn.file.name}`,
      `cannot render ${fn.file.file}: ${fn.canonical.error}`,
      SQL_FILE_FIX,
    );
  }
  const expected = fn.canonical.value;
  const name = `function ${expected.identity}`;
  const { live } = fn;
  const owner = facts.relations.entities?.owner;
  if (!live) {
    const others = fn.others.length ? ` (found only ${fn.others.join(', ')})` : '';
    return repairable(name, `missing${others}`, {
      kind: 'function',
      name: fn.file.name,
      drop: null,
    });
  }
  const differences: string[] = [];
  if (expected.securityDefiner !== live.securityDefiner) {
    differences.push(expected.securityDefiner ? 'not SECURITY DEFINER' : 'SECURITY DEFINER');
  }
  const pin = pinnedPath(expected.config);
  const livePin = pinnedPath(live.config);
  if (pin && !livePin) differences.push(`search_path not pinned (expected ${pin})`);
  else if (pin !== livePin) differences.push(`${livePin}, expected ${pin ?? 'none'}`);
  else if (live.securityDefiner && !livePin)
    differences.push('SECURITY DEFINER without a pinned search_path');
  const others = (c: string[] | null) => (c ?? []).filter((x) => x !== pinnedPath(c)).join(', ');
  if (others(live.config) !== others(expected.config))
    differences.push(`settings ${others(live.config) || 'none'}`);
  if (normalized(live.body) !== normalized(expected.body)) differences.push('body differs');
  for (const [key, value] of Object.entries(expected.traits)) {
    if (live.traits[key] !== value)
      differences.push(`${key} ${live.traits[key]}, expected ${value}`);
  }
  // CREATE OR REPLACE cannot change the result type, argument names or defaults.
  const replaceable = ['result', 'arguments'].every((k) => live.traits[k] === expected.traits[k]);
  const repairs: Repair[] = differences.length
    ? [{ kind: 'function', name: fn.file.name, drop: replaceable ? null : live.identity }]
    : [];
  if (live.securityDefiner && owner && live.owner !== owner) {
    differences.push(
      `owned by ${live.owner}, not by ${owner} (the owner of entities and the views)`,
    );
    repairs.push({ kind: 'owner', type: 'ROUTINE', object: live.identity });
  }
  if (differences.length)
    return repairable(name, `drifted from ${fn.file.file}: ${differences.join('; ')}`, ...repairs);
  const traits = [expected.securityDefiner ? 'SECURITY DEFINER' : null, pin].filter(Boolean);
  return pass(name, `matches ${fn.file.file}${traits.length ? ` (${traits.join(', ')})` : ''}`);
}

function publicExecuteCheck(facts: SchemaFacts): CheckResult {
  const name = 'no EXECUTE for PUBLIC';
  const open = facts.functions.filter((f) => f.live?.publicExecute);
  if (open.length === 0) return pass(name, 'no function of sql/functions/ is executable by PUBLIC');
  return repairable(name, `PUBLIC may EXECUTE ${open.map((f) => f.live!.identity).join(', ')}`, {
    kind: 'grants',
  });
}

function triggerCheck(trigger: TriggerFact, facts: SchemaFacts): CheckResult {
  const name = `trigger ${trigger.file.name} on entities`;
  const incremental = facts.views.filter((v) => v.strategy === 'incremental').map((v) => v.name);
  const capture = trigger.file.name.startsWith(CAPTURE_TRIGGER_PREFIX);
  const enable = !capture || incremental.length > 0;
  // Writes made while capture was off are missing from the incremental tables: rebuild them.
  const rebuilds = capture ? incremental.map(rebuild) : [];
  const { live, canonical } = trigger;
  if (!canonical.ok)
    return check(name, `cannot render ${trigger.file.file}: ${canonical.error}`, SQL_FILE_FIX);
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
  const state = TRIGGER_STATES[live.enabled] ?? live.enabled;
  const uses = incremental.length ? `${incremental.join(', ')} use` : 'no view uses';
  const why = capture ? `; ${uses} the incremental strategy` : '';
  if (enabled === enable) return pass(name, `installed and ${state}${why}`);
  const toggle = { kind: 'trigger-state', name: trigger.file.name, enable } as const;
  return repairable(name, `installed but ${state}${why}`, toggle, ...rebuilds);
}

function grantsCheck(facts: SchemaFacts): CheckResult {
  const { grants } = facts;
  const fix = { kind: 'grants' } as const;
  if (!grants.ok) return repairable('grants', `cannot apply grants.sql: ${grants.error}`, fix);
  const { missing, extra, roles } = grants.value;
  if (missing.length === 0 && extra.length === 0) {
    return pass(
      'grants',
      `as grants.sql gives them${roles.length ? ` to ${roles.join(', ')}` : ' (its roles do not exist)'}`,
    );
  }
  const parts = [
    missing.length ? `missing: ${missing.join('; ')}` : null,
    extra.length ? `not given by grants.sql: ${extra.join('; ')}` : null,
  ];
  return repairable('grants', parts.filter(Boolean).join('; '), fix);
}

function migrationChecks(status: MigrationStatus): CheckResult[] {
  const changed = [...status.modified, ...status.missing.map((m) => `${m} (file missing)`)];
  const pending = status.pending.join(', ');
  return [
    pending
      ? check('migrations applied', `pending: ${pending}`, 'hierarchy-db migrate up')
      : pass('migrations applied', `${status.applied.length} applied, none pending`),
    changed.length
      ? check(
          'migrations unmodified',
          `changed since applied: ${changed.join(', ')}`,
          'restore the released migration file(s); put changes in a new migration (`hierarchy-db migrate create NAME`)',
        )
      : pass('migrations unmodified', 'every applied migration matches its file'),
  ];
}
