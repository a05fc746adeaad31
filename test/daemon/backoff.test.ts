import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/daemon/backoff.ts';

describe('Backoff', () => {
  it('doubles up to the cap, each delay between half and all of its ceiling', () => {
    const low = new Backoff({ initialMs: 250, maxMs: 15_000, random: () => 0 });
    const high = new Backoff({ initialMs: 250, maxMs: 15_000, random: () => 0.999999 });
    const ceilings = [250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 15_000];
    for (const ceiling of ceilings) {
      expect(low.next()).toBe(ceiling / 2);
      expect(high.next()).toBe(ceiling);
    }
    expect(low.attempt).toBe(ceilings.length);
    low.reset();
    expect(low.attempt).toBe(0);
    expect(low.next()).toBe(125);
  });
});
