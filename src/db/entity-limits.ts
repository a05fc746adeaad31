/**
 * Limits on the shape of an entity's path, enforced by CHECK constraints on `entities`
 * (migrations/0006_entity_limits.sql; docs/semantics.md, "Limits"). A GiST key of an ltree holds
 * whole paths, so a path much deeper or longer than these makes the path indexes degenerate for
 * every session; within them a write costs well under a millisecond.
 */
export const ENTITY_LIMITS = {
  /** Levels of a path (`nlevel(path)`), constraint `entities_path_depth_limit`. */
  maxDepth: 100,
  /** Bytes of a path's text (`octet_length(path::text)`), constraint `entities_path_length_limit`. */
  maxPathBytes: 512,
  /** Characters of one label, constraint `entities_path_label_length_limit`. */
  maxLabelChars: 64,
} as const;
