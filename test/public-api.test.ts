import { describe, expect, it } from 'vitest';

describe('public library API (src/index.ts)', () => {
  it('exports the building blocks the CLI uses', async () => {
    const api = await import('../src/index.ts');
    for (const name of [
      'Migrator',
      'RefreshEngine',
      'Daemon',
      'readViewStatus',
      'readHistory',
      'verifySchema',
      'repairSchema',
      'seedHierarchy',
      'openDatabase',
      'startEmbeddedServer',
      'parseDuration',
    ]) {
      expect(typeof (api as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(api.HIERARCHY_VIEWS).toEqual(['mv_entity_ancestors', 'mv_descendant_counts']);
  });
});
