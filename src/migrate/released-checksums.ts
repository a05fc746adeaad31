/**
 * Earlier checksums of released migration files whose text changed while the SQL they run did
 * not. A database that recorded one of them applied the same statements, so it is not reported
 * modified, and `migrate up` records the file's current checksum in its place.
 *
 * - `0004_fast_hierarchy_views`: first released importing its view definitions from 0002 and
 *   0003; now it carries its own copies (migrations import nothing from each other). Its `up` and
 *   `down` emit byte-identical SQL (test/migrate/released-checksums.test.ts).
 */
export const RELEASED_CHECKSUMS: Readonly<Record<string, readonly string[]>> = {
  '0004_fast_hierarchy_views': ['1aa9c56c84968976794cbfa6b8608e619e3bdb0c1b6788f31398ddf1e22aa83e'],
};

/** True when `recorded` is the file's current checksum or an equivalent earlier one. */
export function isSameMigration(name: string, recorded: string, current: string): boolean {
  return recorded === current || (RELEASED_CHECKSUMS[name]?.includes(recorded) ?? false);
}
