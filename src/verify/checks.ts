import type { MigrationStatus } from '../migrate/migrator.ts';
import type { CanonicalObjects } from './canonical-objects.ts';
import { type CheckResult, REPAIR_COMMAND, type Repair } from './repairs.ts';
import type {
  ColumnFact,
  FunctionAttributes,
  FunctionFact,
  IndexFact,
  RelationFact,
  SchemaFacts,
  TriggerFact,
  ViewFact,
} from './schema-inspector.ts';

/** A column SPEC 2.1 requires of `entities` (extra columns are allowed). */
interface ExpectedColumn {
  name: string;
  type: string;
  notNull?: boolean;
  /** Stored generated column with exactly this expression (`null`: any expression). */
  generated?: string | null;
  default?: string;
}

/** SPEC 2.1: the contract of `entities`, checked, never altered by `repair`. */
const ENTITIES_COLUMNS: ExpectedColumn[] = [
  { name: 'id', type: 'bigint', notNull: true },
  { name: 'name', type: 'text', notNull: true },
  { name: 'path', type: 'ltree', notNull: true },
  // "always equal to nlevel(path), enforced by the database".
  { name: 'path_depth', type: 'integer', generated: 'nlevel(path)' },
  // The foreign key that makes orphans impossible hangs on it.
  { name: 'parent_path', type: 'ltree', generated: null },
  { name: 'confidence_score', type: 'double precision', notNull: true },
  { name: 'is_active', type: 'boolean', notNull: true, default: 'true' },
  { name: 'created_at', type: 'timestamp with time zone', notNull: true },
  { name: 'updated_at', type: 'timestamp with time zone', notNull: true },
];

/** SPEC 2.6: the audit columns readers (status, history, dashboards) rely on. */
const AUDIT_COLUMNS = [
  'id',
  'view_name',
  'trigger',
  'status',
  'started_at',
  'finished_at',
  'duration_ms',
  'rows',
  'staleness_ms',
  'pending_changes',
  'data_as_of',
  'error_code',
  'error_message',
  'application_name',
  'backend_pid',
];

const NOT_REPAIRED_TABLE =
  '`repair` never alters tables: restore it with a new migration (`hierarchy-db migrate create NAME`) or from a backup';

function pass(name: string, detail: string): CheckResult {
  return { name, ok: true, detail, fix: null, repairs: [] };
}

function fail(name: string, detail: string, fix: string, repairs: Repair[] = []): CheckResult {
  return { name, ok: false, detail, fix, repairs };
}

/** Builds the SPEC 5 checklist from the inspected schema and the migration status. */
export function buildChecks(
  facts: SchemaFacts,
  canonical: CanonicalObjects,
  migrations: MigrationStatus,
): CheckResult[] {
  const owner = facts.relations.entities?.owner ?? null;
  return [
    ...extensionChecks(facts),
    entitiesColumnsCheck(facts.relations.entities ?? null),
    entitiesConstraintsCheck(facts),
    ...facts.indexes.map((index) => withTable(facts, index.table, indexCheck(index))),
    otherInvalidIndexesCheck(facts),
    ...facts.views.flatMap((view) => viewChecks(view, owner)),
    ...facts.functions.flatMap((fn) => functionChecks(fn, canonical, owner)),
    ...facts.triggers.map((trigger) => withTable(facts, trigger.table, triggerCheck(trigger))),
    simpleTableCheck(facts.relations.hierarchy_changes ?? null, 'hierarchy_changes', [
      'xid',
      'changed_at',
    ]),
    simpleTableCheck(facts.relations.hierarchy_view_state ?? null, 'hierarchy_view_state', [
      'view_name',
      'snapshot',
      'data_as_of',
      'last_refreshed_at',
    ]),
    simpleTableCheck(facts.relations.mv_refresh_audit ?? null, 'mv_refresh_audit', AUDIT_COLUMNS),
    grantsCheck(facts),
    ...migrationChecks(migrations),
  ];
}

/** An object on a missing table cannot be repaired: the table comes first. */
function withTable(facts: SchemaFacts, table: string, check: CheckResult): CheckResult {
  const missing = table in facts.relations && facts.relations[table] === null;
  return check.ok || !missing
    ? check
    : fail(check.name, `table ${table} missing`, MISSING_TABLE_FIX);
}

const MISSING_TABLE_FIX = 'hierarchy-db migrate up (on an empty schema), or restore a backup';

function extensionChecks(facts: SchemaFacts): CheckResult[] {
  return Object.entries(facts.extensions).map(([name, version]) =>
    version
      ? pass(`extension ${name}`, `installed (version ${version})`)
      : fail(
          `extension ${name}`,
          'not installed',
          `CREATE EXTENSION IF NOT EXISTS ${name}; (as a role allowed to create extensions), then \`hierarchy-db migrate up\``,
        ),
  );
}

function describeColumn(column: ColumnFact): string {
  return `${column.name} ${column.type}${column.notNull ? ' not null' : ''}${
    column.generated === 's' ? ` generated (${column.expression})` : ''
  }`;
}

function entitiesColumnsCheck(table: RelationFact | null): CheckResult {
  const name = 'table entities';
  if (!table) {
    return fail(
      name,
      'missing',
      'hierarchy-db migrate up (on an empty schema), or restore a backup',
    );
  }
  if (table.kind !== 'r') {
    return fail(name, `entities is not a table (relkind ${table.kind})`, NOT_REPAIRED_TABLE);
  }
  const problems: string[] = [];
  for (const expected of ENTITIES_COLUMNS) {
    const column = table.columns.find((c) => c.name === expected.name);
    if (!column) {
      problems.push(`column ${expected.name} missing`);
      continue;
    }
    if (column.type !== expected.type) {
      problems.push(`${expected.name} is ${column.type}, expected ${expected.type}`);
    }
    if (expected.notNull && !column.notNull) problems.push(`${expected.name} is nullable`);
    if (expected.generated !== undefined) {
      if (column.generated !== 's') {
        problems.push(`${expected.name} is not a stored generated column`);
      } else if (expected.generated !== null && column.expression !== expected.generated) {
        problems.push(
          `${expected.name} is generated as ${column.expression}, expected ${expected.generated}`,
        );
      }
    }
    if (expected.default !== undefined && column.expression !== expected.default) {
      problems.push(
        `${expected.name} defaults to ${column.expression ?? 'NULL'}, expected ${expected.default}`,
      );
    }
  }
  return problems.length === 0
    ? pass(name, `columns as SPEC 2.1 requires (${table.columns.map((c) => c.name).join(', ')})`)
    : fail(
        name,
        `${problems.join('; ')} (have: ${table.columns.map(describeColumn).join(', ')})`,
        NOT_REPAIRED_TABLE,
      );
}

function entitiesConstraintsCheck(facts: SchemaFacts): CheckResult {
  const name = 'table entities constraints';
  if (!facts.relations.entities) return fail(name, 'table entities missing', NOT_REPAIRED_TABLE);
  const constraints = facts.entitiesConstraints;
  const same = (a: string[], b: string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  const problems: string[] = [];
  const found: string[] = [];
  const want = (
    label: string,
    predicate: (c: (typeof constraints)[number]) => boolean,
  ): (typeof constraints)[number] | undefined => {
    const match = constraints.find(predicate);
    if (!match) problems.push(`${label} missing`);
    else {
      found.push(`${label} (${match.name})`);
      if (!match.validated) problems.push(`${match.name} is NOT VALID (not enforced on old rows)`);
    }
    return match;
  };
  want('primary key (id)', (c) => c.type === 'p' && same(c.columns, ['id']));
  want('unique (path)', (c) => c.type === 'u' && same(c.columns, ['path']));
  want(
    'foreign key (parent_path) -> entities (path)',
    (c) =>
      c.type === 'f' &&
      same(c.columns, ['parent_path']) &&
      c.referencedTable === 'entities' &&
      same(c.referencedColumns, ['path']),
  );
  want(
    'check on confidence_score',
    (c) => c.type === 'c' && c.definition.includes('confidence_score'),
  );
  return problems.length === 0
    ? pass(name, found.join(', '))
    : fail(name, problems.join('; '), NOT_REPAIRED_TABLE);
}

function indexCheck(index: IndexFact): CheckResult {
  const name = `index ${index.name}`;
  const { live, canonical } = index;
  const backsConstraint = canonical === null;
  if (!live) {
    return backsConstraint
      ? fail(
          name,
          `missing on ${index.table} (it backs a constraint of ${index.table})`,
          NOT_REPAIRED_TABLE,
        )
      : fail(name, `missing on ${index.table}`, REPAIR_COMMAND, [
          { kind: 'create-index', index: index.name },
        ]);
  }
  if (live.table !== index.table) {
    return fail(name, `is on ${live.table}, expected on ${index.table}`, REPAIR_COMMAND, [
      { kind: 'recreate-index', index: index.name },
    ]);
  }
  if (canonical && !canonical.ok) {
    return fail(
      name,
      `cannot render the canonical definition: ${canonical.error}`,
      'fix the failing checks above first, then `hierarchy-db verify` again',
    );
  }
  if (canonical?.ok && canonical.value !== live.definition) {
    return fail(
      name,
      `definition drifted: has \`${live.definition}\`, migrations define \`${canonical.value}\``,
      REPAIR_COMMAND,
      [{ kind: 'recreate-index', index: index.name }],
    );
  }
  if (!live.valid || !live.ready) {
    return fail(
      name,
      `invalid (indisvalid = ${live.valid}, indisready = ${live.ready}): the planner ignores it${
        live.unique ? ' and REFRESH ... CONCURRENTLY cannot use it' : ''
      }`,
      REPAIR_COMMAND,
      [{ kind: 'reindex', index: index.name }],
    );
  }
  const role = backsConstraint
    ? 'backs its constraint'
    : live.unique && !live.partial && index.table.startsWith('mv_')
      ? 'unique, no WHERE: REFRESH ... CONCURRENTLY can use it'
      : 'matches the migrations';
  return pass(name, `valid on ${index.table}; ${role}`);
}

function otherInvalidIndexesCheck(facts: SchemaFacts): CheckResult {
  const name = 'no other invalid indexes';
  if (facts.otherInvalidIndexes.length === 0) {
    return pass(name, 'no invalid index on the hierarchy tables and views');
  }
  const list = facts.otherInvalidIndexes.map((i) => `${i.name} on ${i.table}`).join(', ');
  // Typically the leftover of a failed CREATE/REINDEX ... CONCURRENTLY (`*_ccnew`): not ours
  // to guess whether to rebuild or drop.
  return fail(
    name,
    `invalid: ${list} (not defined by the migrations; often the leftover of a failed CONCURRENTLY build)`,
    `DROP INDEX CONCURRENTLY ${facts.otherInvalidIndexes[0]!.name}; (or REINDEX INDEX CONCURRENTLY it if it is wanted)`,
  );
}

function viewChecks(view: ViewFact, owner: string | null): CheckResult[] {
  const existsName = `materialized view ${view.name}`;
  const driftName = `view definition ${view.name}`;
  const rebuild: Repair[] = [{ kind: 'rebuild-view', view: view.name }];
  const { live, canonical } = view;
  if (!live) {
    return [
      fail(existsName, 'missing', REPAIR_COMMAND, rebuild),
      fail(driftName, 'view missing', REPAIR_COMMAND, rebuild),
    ];
  }
  if (live.kind !== 'm') {
    const what = live.kind === 'v' ? 'a plain view' : `relkind ${live.kind}`;
    const repairs = live.kind === 'v' ? rebuild : [];
    const fix =
      live.kind === 'v' ? REPAIR_COMMAND : `rename or drop the ${what}, then ${REPAIR_COMMAND}`;
    return [
      fail(existsName, `${view.name} is ${what}, not a materialized view`, fix, repairs),
      fail(driftName, `${view.name} is ${what}`, fix, repairs),
    ];
  }
  const checks: CheckResult[] = [];
  const problems: string[] = [];
  const repairs: Repair[] = [];
  if (!live.populated) {
    problems.push('not populated (SELECT fails; REFRESH ... CONCURRENTLY needs a populated view)');
    repairs.push({ kind: 'populate-view', view: view.name });
  }
  if (owner && live.owner !== owner) {
    problems.push(
      `owned by ${live.owner}, not by ${owner} (the owner of entities, who runs refresh_hierarchy_views())`,
    );
    repairs.push({ kind: 'set-owner', objectType: 'MATERIALIZED VIEW', object: view.name });
  }
  checks.push(
    problems.length === 0
      ? pass(existsName, `exists, populated, owned by ${live.owner}`)
      : fail(existsName, problems.join('; '), REPAIR_COMMAND, repairs),
  );
  if (!canonical.ok) {
    checks.push(
      fail(
        driftName,
        `cannot render the canonical definition: ${canonical.error}`,
        'fix the failing checks above first, then `hierarchy-db verify` again',
      ),
    );
  } else if (canonical.value !== live.definition) {
    checks.push(
      fail(
        driftName,
        `drifted: the live query differs from the migrations' (live: ${oneLine(live.definition)})`,
        REPAIR_COMMAND,
        rebuild,
      ),
    );
  } else {
    checks.push(pass(driftName, 'matches the migrations'));
  }
  return checks;
}

function oneLine(text: string | null, max = 160): string {
  const flat = (text ?? '').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** Collapses whitespace: bodies are stored verbatim, so CRLF checkouts must not look drifted. */
function normalizedBody(text: string | null): string | null {
  return text === null ? null : text.replace(/\s+/g, ' ').trim();
}

function functionDifferences(live: FunctionAttributes, canonical: FunctionAttributes): string[] {
  const differences: string[] = [];
  if (canonical.securityDefiner && !live.securityDefiner) differences.push('not SECURITY DEFINER');
  if (!canonical.securityDefiner && live.securityDefiner) differences.push('SECURITY DEFINER');
  const pin = canonical.config?.find((c) => c.startsWith('search_path='));
  const livePin = live.config?.find((c) => c.startsWith('search_path='));
  if (pin && !livePin) differences.push(`search_path not pinned (expected ${pin})`);
  else if (pin !== livePin) {
    differences.push(`search_path is ${livePin ?? 'not set'}, expected ${pin ?? 'not set'}`);
  }
  const otherConfig = (c: string[] | null) =>
    (c ?? []).filter((x) => !x.startsWith('search_path=')).join(', ');
  if (otherConfig(live.config) !== otherConfig(canonical.config)) {
    differences.push(`settings ${otherConfig(live.config) || 'none'}`);
  }
  if (normalizedBody(live.source) !== normalizedBody(canonical.source)) {
    differences.push('body differs');
  }
  if (normalizedBody(live.sqlBody) !== normalizedBody(canonical.sqlBody)) {
    differences.push('SQL body differs');
  }
  const simple: (keyof FunctionAttributes)[] = [
    'arguments',
    'result',
    'language',
    'volatility',
    'strict',
    'kind',
    'leakproof',
    'parallel',
    'cost',
    'rows',
  ];
  for (const key of simple) {
    if (live[key] !== canonical[key]) {
      differences.push(`${key} ${String(live[key])}, expected ${String(canonical[key])}`);
    }
  }
  return differences;
}

function functionChecks(
  fn: FunctionFact,
  canonical: CanonicalObjects,
  owner: string | null,
): CheckResult[] {
  const definition = canonical.functions.find((f) => f.name === fn.name)!;
  if (!fn.canonical.ok) {
    return [
      fail(
        `function ${fn.name}`,
        `cannot render the canonical definition: ${fn.canonical.error}`,
        'fix the failing checks above first, then `hierarchy-db verify` again',
      ),
    ];
  }
  const expected = fn.canonical.value;
  const name = `function ${expected.identity}`;
  const { live } = fn;
  if (!live) {
    const others = fn.otherSignatures.length
      ? ` (found only ${fn.otherSignatures.join(', ')})`
      : '';
    return [
      fail(name, `missing${others}`, REPAIR_COMMAND, [
        { kind: 'replace-function', fn: fn.name, dropFirst: null, missing: true },
      ]),
    ];
  }
  const checks: CheckResult[] = [];
  const differences = functionDifferences(live, expected);
  const repairs: Repair[] = [];
  if (differences.length > 0) {
    // CREATE OR REPLACE cannot change the result type or argument names and defaults.
    const replaceable = live.result === expected.result && live.arguments === expected.arguments;
    repairs.push({
      kind: 'replace-function',
      fn: fn.name,
      dropFirst: replaceable ? null : live.identity,
      missing: false,
    });
  }
  if (expected.securityDefiner && owner && live.owner !== owner) {
    differences.push(
      `owned by ${live.owner}, not by ${owner} (the owner of entities and the views)`,
    );
    repairs.push({ kind: 'set-owner', objectType: 'FUNCTION', object: live.identity });
  }
  const traits = [
    expected.securityDefiner ? 'SECURITY DEFINER' : null,
    expected.config?.find((c) => c.startsWith('search_path=')) ?? null,
  ].filter(Boolean);
  checks.push(
    differences.length === 0
      ? pass(
          name,
          `matches ${definition.source}${traits.length ? ` (${traits.join(', ')})` : ''}, owned by ${live.owner}`,
        )
      : fail(
          name,
          `drifted from ${definition.source}: ${differences.join('; ')}`,
          REPAIR_COMMAND,
          repairs,
        ),
  );
  if (definition.revokeFromPublic) {
    checks.push(
      live.publicExecute
        ? fail(`privileges ${expected.identity}`, 'PUBLIC may EXECUTE it', REPAIR_COMMAND, [
            { kind: 'revoke-public', fn: fn.name },
          ])
        : pass(`privileges ${expected.identity}`, 'EXECUTE revoked from PUBLIC'),
    );
  }
  return checks;
}

const TRIGGER_STATES: Record<string, string> = {
  O: 'enabled',
  A: 'enabled (ALWAYS)',
  R: 'fires only with session_replication_role = replica',
  D: 'disabled',
};

function triggerCheck(trigger: TriggerFact): CheckResult {
  const name = `trigger ${trigger.name} on ${trigger.table}`;
  const recreate: Repair[] = [
    { kind: 'recreate-trigger', trigger: trigger.name, table: trigger.table },
  ];
  const { live, canonical } = trigger;
  if (!live) return fail(name, 'missing', REPAIR_COMMAND, recreate);
  if (!canonical.ok) {
    return fail(
      name,
      `cannot render the canonical definition: ${canonical.error}`,
      'fix the failing checks above first, then `hierarchy-db verify` again',
    );
  }
  if (canonical.value !== live.definition) {
    return fail(
      name,
      `definition drifted: has \`${live.definition}\`, migrations define \`${canonical.value}\``,
      REPAIR_COMMAND,
      recreate,
    );
  }
  const state = TRIGGER_STATES[live.enabled] ?? `tgenabled = ${live.enabled}`;
  if (live.enabled !== 'O' && live.enabled !== 'A') {
    return fail(name, `installed but ${state}`, REPAIR_COMMAND, [
      { kind: 'enable-trigger', trigger: trigger.name, table: trigger.table },
    ]);
  }
  return pass(name, `installed and ${state}`);
}

function simpleTableCheck(
  table: RelationFact | null,
  name: string,
  columns: string[],
): CheckResult {
  const label = `table ${name}`;
  if (!table) {
    return fail(
      label,
      'missing',
      `${NOT_REPAIRED_TABLE}; \`hierarchy-db migrate up\` creates it on a fresh schema`,
    );
  }
  const missing = columns.filter((c) => !table.columns.some((column) => column.name === c));
  return missing.length === 0
    ? pass(label, 'present')
    : fail(label, `columns missing: ${missing.join(', ')}`, NOT_REPAIRED_TABLE);
}

function grantsCheck(facts: SchemaFacts): CheckResult {
  const name = 'grants hierarchy_reader, hierarchy_refresher';
  if (facts.roles.length === 0) {
    return pass(name, 'roles not present (the migrating role may not create roles): skipped');
  }
  const lacking = facts.grants.filter((g) => g.held === false);
  if (lacking.length === 0) {
    return pass(name, `${facts.roles.join(', ')} hold their privileges`);
  }
  return fail(
    name,
    `missing: ${lacking.map((g) => `${g.privilege} on ${g.object} to ${g.role}`).join('; ')}`,
    REPAIR_COMMAND,
    [{ kind: 'grants' }],
  );
}

function migrationChecks(status: MigrationStatus): CheckResult[] {
  const pending = status.pending;
  const changed = [...status.modified, ...status.missing.map((m) => `${m} (file missing)`)];
  return [
    pending.length === 0
      ? pass('migrations applied', `${status.applied.length} applied, none pending`)
      : fail('migrations applied', `pending: ${pending.join(', ')}`, 'hierarchy-db migrate up'),
    changed.length === 0
      ? pass('migrations unmodified', 'every applied migration matches its file')
      : fail(
          'migrations unmodified',
          `changed since applied: ${changed.join(', ')}`,
          'restore the released migration file(s); put changes in a new migration (`hierarchy-db migrate create NAME`)',
        ),
  ];
}
