import type pg from 'pg';
import type { Logger } from '../logging/logger.ts';

/** The SLO report of SPEC section 6, as `slo --json` prints it. */
export interface SloSummary {
  entities: number;
  ancestor_resolution: {
    target_mean_ms: number;
    target_p95_ms: number;
    actual_mean_ms: number;
    actual_p95_ms: number;
    actual_p99_ms: number;
    samples: number;
    status: 'PASSED' | 'FAILED';
  };
  refresh: { threshold_ms: number; actual_ms: number; status: 'PASSED' | 'FAILED' };
}

/** The part of `checkSlo` (src/slo/slo-check.ts) the demo calls. */
export type SloCheck = (options: {
  pool: pg.Pool;
  logger: Logger;
  target?: string;
  samples?: number;
}) => Promise<SloSummary>;

// src/slo (the `slo` command's library) is being written alongside the demo and was not in git
// when the demo landed. Loading it by a computed specifier keeps the demo building without it;
// once src/slo/slo-check.ts is committed, replace this with a static
// `import { checkSlo } from '../slo/slo-check.ts'` (issue 7, item 1).
const SLO_MODULE = '../slo/slo-check.ts';

/**
 * The SLO library's `checkSlo`, or undefined when this checkout does not have it.
 * Any other failure to load it (a syntax error, a missing dependency) is thrown.
 */
export async function loadSloCheck(): Promise<SloCheck | undefined> {
  try {
    const module = (await import(SLO_MODULE)) as { checkSlo?: SloCheck };
    return typeof module.checkSlo === 'function' ? module.checkSlo : undefined;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const message = error instanceof Error ? error.message : '';
    if (code === 'ERR_MODULE_NOT_FOUND' && message.includes('slo-check')) return undefined;
    throw error;
  }
}
