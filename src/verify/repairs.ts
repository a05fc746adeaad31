/**
 * What `repair` may do about a failed check. Only derived objects appear here: `entities`,
 * its constraints and data, the extensions, the bookkeeping tables and the migrations are
 * never repaired (their checks carry no repair, and name the command that fixes them).
 */
export type Repair =
  /** Drop (if present) and recreate a materialized view, WITH DATA, with its indexes. */
  | { kind: 'rebuild-view'; view: string }
  /** Populate a canonical but unpopulated materialized view. */
  | { kind: 'populate-view'; view: string }
  /** Build a missing index, without blocking writes. */
  | { kind: 'create-index'; index: string }
  /** Drop an index whose definition drifted and build the canonical one. */
  | { kind: 'recreate-index'; index: string }
  /** Rebuild an invalid index in place. */
  | { kind: 'reindex'; index: string }
  /** CREATE OR REPLACE the canonical function; `dropFirst` when REPLACE cannot change it. */
  | { kind: 'replace-function'; fn: string; dropFirst: string | null; missing: boolean }
  /** Revoke EXECUTE from PUBLIC. */
  | { kind: 'revoke-public'; fn: string }
  /** Give a derived object back to the owner of `entities`. */
  | { kind: 'set-owner'; objectType: 'FUNCTION' | 'MATERIALIZED VIEW'; object: string }
  /** Re-enable a disabled trigger. */
  | { kind: 'enable-trigger'; trigger: string; table: string }
  /** Drop (if present) and recreate a trigger. */
  | { kind: 'recreate-trigger'; trigger: string; table: string }
  /** Run the migrations' roles-and-grants SQL again. */
  | { kind: 'grants' };

/** One item of the checklist (SPEC 5). */
export interface CheckResult {
  /** Names the object, e.g. `index entities_depth_path_gist`. */
  name: string;
  ok: boolean;
  detail: string;
  /** The command that fixes it; null when the check passes. */
  fix: string | null;
  /** What `repair` would do; empty when it passes or `repair` must not touch it. */
  repairs: Repair[];
}

/** The command line that repairs derived objects. */
export const REPAIR_COMMAND = 'hierarchy-db repair';
