import type { ColumnType, Generated } from 'kysely';

/** `entities`: one row per node of the hierarchy. */
export interface EntitiesTable {
  id: Generated<number>;
  name: string;
  path: string;
  path_depth: ColumnType<number, never, never>;
  parent_path: ColumnType<string | null, never, never>;
  confidence_score: ColumnType<number, number | undefined, number>;
  is_active: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: ColumnType<Date, Date | undefined, never>;
  updated_at: ColumnType<Date, Date | undefined, Date>;
}

/**
 * `mv_entity_ancestors`: a materialized view or a table, by strategy (docs/semantics.md, "Views").
 */
export interface EntityAncestorsView {
  entity_id: number;
  name: string;
  path: string;
  path_depth: number;
  confidence_score: number;
  ancestor_ids: string[];
  ancestors: string[];
}

/**
 * `mv_descendant_counts`: a materialized view or a table, by strategy (docs/semantics.md, "Views").
 */
export interface DescendantCountsView {
  entity_id: number;
  name: string;
  path: string;
  path_depth: number;
  confidence_score: number;
  descendant_count: number;
}

/**
 * `mv_refresh_audit`: one row per refresh attempt that did or tried work (docs/semantics.md,
 * "The audit").
 */
export interface RefreshAuditTable {
  id: Generated<number>;
  view_name: string;
  trigger: 'schedule' | 'change' | 'manual' | 'sql';
  status: 'refreshed' | 'skipped' | 'failed' | 'cancelled';
  reason: string | null;
  method: string | null;
  started_at: Date;
  finished_at: Date;
  duration_ms: number;
  rows: number | null;
  rows_changed: number | null;
  staleness_ms: number | null;
  pending_changes: number | null;
  data_as_of: Date | null;
  error_code: string | null;
  error_message: string | null;
  application_name: string | null;
  backend_pid: number | null;
}

/** The tables and views kysely knows about. */
export interface Database {
  entities: EntitiesTable;
  mv_entity_ancestors: EntityAncestorsView;
  mv_descendant_counts: DescendantCountsView;
  mv_refresh_audit: RefreshAuditTable;
}
