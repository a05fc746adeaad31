/** Options for {@link ChangeDebouncer}. */
export interface ChangeDebouncerOptions {
  /** Quiet period: fire this long after the latest change. */
  debounceMs: number;
  /** Fire no later than this long after the first change not yet fired for. */
  maxWaitMs: number;
  /** Called with how many changes it covers and how long the first one waited. */
  onFire: (changes: number, waitedMs: number) => void;
}

/**
 * Turns a stream of change notifications into refresh requests: one once writes have been quiet
 * for `debounceMs`, but no later than `maxWaitMs` after the first change, so a steady trickle of
 * writes cannot postpone the refresh forever.
 */
export class ChangeDebouncer {
  readonly #options: ChangeDebouncerOptions;
  #firstAt: number | undefined;
  #changes = 0;
  #quietTimer: NodeJS.Timeout | undefined;
  #maxTimer: NodeJS.Timeout | undefined;

  constructor(options: ChangeDebouncerOptions) {
    this.#options = options;
  }

  /** True when no change is waiting to fire. */
  get idle(): boolean {
    return this.#firstAt === undefined;
  }

  /** A change was notified. */
  notify(): void {
    this.#changes++;
    if (this.#firstAt === undefined) {
      this.#firstAt = Date.now();
      this.#maxTimer = setTimeout(() => this.#fire(), this.#options.maxWaitMs);
    }
    if (this.#quietTimer) clearTimeout(this.#quietTimer);
    this.#quietTimer = setTimeout(() => this.#fire(), this.#options.debounceMs);
  }

  /** Forgets what is waiting. */
  stop(): void {
    this.#clear();
  }

  #fire(): void {
    const changes = this.#changes;
    const waitedMs = Date.now() - (this.#firstAt ?? Date.now());
    this.#clear();
    this.#options.onFire(changes, waitedMs);
  }

  #clear(): void {
    if (this.#quietTimer) clearTimeout(this.#quietTimer);
    if (this.#maxTimer) clearTimeout(this.#maxTimer);
    this.#quietTimer = undefined;
    this.#maxTimer = undefined;
    this.#firstAt = undefined;
    this.#changes = 0;
  }
}
