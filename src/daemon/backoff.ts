/** Options for {@link Backoff}. */
export interface BackoffOptions {
  /** First delay before jitter. */
  initialMs: number;
  /** Largest delay before jitter. */
  maxMs: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Random source in [0, 1), replaceable for tests. Default `Math.random`. */
  random?: () => number;
}

/**
 * Capped exponential backoff with jitter: attempt n waits between half and all of
 * `min(maxMs, initialMs * factor^n)`. The random half keeps replicas that lost the database at the
 * same moment from reconnecting in lockstep; the fixed half keeps a retry from firing at once.
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #factor: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions) {
    this.#initialMs = options.initialMs;
    this.#maxMs = options.maxMs;
    this.#factor = options.factor ?? 2;
    this.#random = options.random ?? Math.random;
  }

  /** Attempts since the last {@link reset}. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay before the next attempt, in milliseconds; each call counts one attempt. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#initialMs * this.#factor ** this.#attempt);
    this.#attempt++;
    return Math.round(ceiling / 2 + (this.#random() * ceiling) / 2);
  }

  /** Back to the first delay (after a success). */
  reset(): void {
    this.#attempt = 0;
  }
}

/** Reconnecting to the database: 250 ms, 500 ms, 1 s, ... capped at 15 s (each with jitter). */
export const RECONNECT_BACKOFF = { initialMs: 250, maxMs: 15_000 } as const;

/** Retrying a failed refresh: 1 s, 2 s, 4 s, ... capped at 60 s (each with jitter). */
export const RETRY_BACKOFF = { initialMs: 1_000, maxMs: 60_000 } as const;

/** Looking again after another session's refresh: 500 ms, 1 s, ... capped at 10 s (with jitter). */
export const RECHECK_BACKOFF = { initialMs: 500, maxMs: 10_000 } as const;
