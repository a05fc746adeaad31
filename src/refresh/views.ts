import { ConfigError } from '../config/config-error.ts';

/** The materialized views the project owns, in refresh order. */
export const HIERARCHY_VIEWS = ['mv_entity_ancestors', 'mv_descendant_counts'] as const;

/** One of {@link HIERARCHY_VIEWS}. */
export type ViewName = (typeof HIERARCHY_VIEWS)[number];

/** Who asked for a refresh, as recorded in the audit. */
export type RefreshTrigger = 'schedule' | 'change' | 'manual' | 'sql';

/** The outcome of one view's refresh attempt. */
export type RefreshStatus = 'refreshed' | 'skipped' | 'failed' | 'cancelled';

/**
 * Why a refresh attempt was skipped, failed or was cancelled, decided by the database from state
 * or SQLSTATE (never from message text). `strategy_changed`, `definition_changed` and `rebuilt`
 * mark audit rows of relations rebuilt by sql/functions/hierarchy_rebuild_view.sql.
 */
export type RefreshReason =
  | 'no_changes'
  | 'lock_busy'
  | 'statement_timeout'
  | 'lock_timeout'
  | 'cancelled'
  | 'missing'
  | 'error'
  | 'strategy_changed'
  | 'definition_changed'
  | 'rebuilt';

/** How a view was refreshed: by its strategy, or rebuilt beside and swapped in. */
export type RefreshMethod = 'concurrent' | 'plain' | 'incremental' | 'full' | 'rebuild';

/** How a view is maintained (docs/semantics.md, "Strategies"). */
export type ViewStrategy = 'materialized' | 'incremental';

/** The strategies, for validation and help text. */
export const VIEW_STRATEGIES: readonly ViewStrategy[] = ['materialized', 'incremental'];

/** Checks `--view` values against the known views (never concatenated into SQL). */
export function parseViewNames(values: readonly string[] | undefined): ViewName[] | undefined {
  if (values === undefined || values.length === 0) return undefined;
  return values.map((value) => {
    if (!(HIERARCHY_VIEWS as readonly string[]).includes(value)) {
      throw new ConfigError(
        `--view: unknown view '${value}'; expected one of ${HIERARCHY_VIEWS.join(', ')}`,
      );
    }
    return value as ViewName;
  });
}
