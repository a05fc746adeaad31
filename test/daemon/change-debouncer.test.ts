import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChangeDebouncer } from '../../src/daemon/change-debouncer.ts';

describe('ChangeDebouncer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires once writes are quiet for the debounce', () => {
    const fired: [number, number][] = [];
    const d = new ChangeDebouncer({
      debounceMs: 300,
      maxWaitMs: 10_000,
      onFire: (n, w) => fired.push([n, w]),
    });
    d.notify();
    vi.advanceTimersByTime(200);
    d.notify();
    vi.advanceTimersByTime(299);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual([[2, 500]]);
    vi.advanceTimersByTime(20_000);
    expect(fired).toHaveLength(1);
  });

  it('fires at max-wait after the first change however busy the writes', () => {
    const fired: [number, number][] = [];
    const d = new ChangeDebouncer({
      debounceMs: 1_000,
      maxWaitMs: 1_500,
      onFire: (n, w) => fired.push([n, w]),
    });
    for (let t = 0; t < 4_000; t += 200) {
      d.notify();
      vi.advanceTimersByTime(200);
    }
    // Every 1.5 s (the next window opens with the first change after a fire).
    expect(fired.map(([, waited]) => waited)).toEqual([1_500, 1_500]);
    d.stop();
    vi.advanceTimersByTime(5_000);
    expect(fired).toHaveLength(2);
  });
});
