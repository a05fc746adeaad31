// The public library API (`hierarchy-db`): re-exports only, and importing it has no side effects.
// The CLI (src/cli) is built on exactly these. The embedded test server is `hierarchy-db/testing`
// (src/testing.ts).

export { type HistoryOptions, type HistoryRow, readHistory } from './audit/refresh-history.ts';
export { type LastRefresh, readViewStatus, type ViewStatus } from './audit/view-status.ts';
export { ConfigError } from './config/config-error.ts';
export { redactUrl, resolveDatabaseTarget } from './config/database-url.ts';
export { formatDuration, parseDuration } from './config/duration.ts';
export { Daemon } from './daemon/daemon.ts';
export { type DaemonOptions, resolveDaemonOptions } from './daemon/daemon-options.ts';
export { ConnectionError } from './db/connection-error.ts';
export { type DatabaseHandle, openDatabase } from './db/database.ts';
export { type ConnectionOptions, createClient, createPool } from './db/pool.ts';
export type { Database } from './db/schema.ts';
export { SQLSTATE } from './db/sqlstate.ts';
export { createLogger, type Logger } from './logging/logger.ts';
export { LockTimeoutError } from './migrate/advisory-lock.ts';
export {
  DATA_TABLES,
  type DataAtRisk,
  DataLossError,
  type DownOptions,
  MigrationFailedError,
  MigrationModifiedError,
  type MigrationStatus,
  Migrator,
  type MigratorOptions,
} from './migrate/migrator.ts';
export {
  RefreshEngine,
  type RefreshEngineOptions,
  type RefreshOptions,
  type RefreshResult,
  RefreshUnavailableError,
} from './refresh/refresh-engine.ts';
export {
  HIERARCHY_VIEWS,
  type RefreshStatus,
  type RefreshTrigger,
  type ViewName,
} from './refresh/views.ts';
export {
  type SeedOptions,
  type SeedResult,
  SeedTargetNotEmptyError,
  seedHierarchy,
} from './seed/seed-hierarchy.ts';
export { type RepairOptions, type RepairOutcome, repairSchema } from './verify/schema-repairer.ts';
export { type VerifyOptions, type VerifyReport, verifySchema } from './verify/schema-verifier.ts';
