/**
 * Advisory lock key of refresh single-flight: `refresh_hierarchy_views()` takes it
 * (transaction-level) in `sql/functions/refresh_hierarchy_views.sql`, and the daemon and
 * `status` look for its holder in `pg_locks`. The key is part of the database contract: the SQL
 * files carry the same literal.
 */
export const REFRESH_LOCK_KEY = 4_107_315_530_992_118n;
