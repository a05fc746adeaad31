import type pg from 'pg';
import { type ConnectionOptions, createClient } from '../db/pool.ts';
import type { Logger } from '../logging/logger.ts';
import { Backoff, RECONNECT_BACKOFF } from './backoff.ts';
import { errorFields } from './log-fields.ts';

/** The channel the change-tracking trigger notifies, once per writing transaction (SPEC 2.4). */
export const CHANGE_CHANNEL = 'hierarchy_changed';

/** Options for {@link ChangeListener}. */
export interface ChangeListenerOptions {
  connection: ConnectionOptions;
  logger: Logger;
  /** A writing transaction committed. */
  onChange: () => void;
  /** LISTEN is (again) in place; notifications sent before it may have been missed. */
  onListening: () => void;
  /** The connection was lost; notifications are missed until `onListening`. */
  onLost: () => void;
}

/**
 * LISTENs on {@link CHANGE_CHANNEL} on a dedicated connection: not a pooled one, because a pool
 * hands connections out and closes idle ones, and a LISTEN lives exactly as long as its session.
 * When the session dies it reconnects with capped exponential backoff and jitter and LISTENs
 * again; `onListening` then lets the daemon catch up on what it missed.
 */
export class ChangeListener {
  readonly #options: ChangeListenerOptions;
  readonly #backoff = new Backoff(RECONNECT_BACKOFF);
  #client: pg.Client | undefined;
  #listening = false;
  #timer: NodeJS.Timeout | undefined;
  #connecting = false;
  #stopped = false;

  constructor(options: ChangeListenerOptions) {
    this.#options = options;
  }

  /** True while LISTEN is in place. */
  get listening(): boolean {
    return this.#listening;
  }

  start(): void {
    void this.#connect();
  }

  /** Skips the rest of the backoff wait (the database is known to answer again). */
  reconnectNow(): void {
    if (this.#stopped || this.#listening || this.#connecting) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    void this.#connect();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#listening = false;
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  async #connect(): Promise<void> {
    if (this.#stopped || this.#connecting) return;
    this.#connecting = true;
    const client = createClient({
      ...this.#options.connection,
      applicationName: 'hierarchy-db/daemon-listen',
    });
    this.#client = client;
    client.on('notification', (message) => {
      if (message.channel === CHANGE_CHANNEL) this.#options.onChange();
    });
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client, new Error('connection closed')));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      this.#connecting = false;
      this.#lost(client, error);
      return;
    }
    this.#connecting = false;
    if (this.#stopped || this.#client !== client) return;
    this.#listening = true;
    this.#backoff.reset();
    this.#options.logger.info(
      { event: 'listen.started', channel: CHANGE_CHANNEL },
      `listening on ${CHANGE_CHANNEL}`,
    );
    this.#options.onListening();
  }

  #lost(client: pg.Client, error: unknown): void {
    // 'error' and 'end' both fire for one loss, and a failed connect lands here as well.
    if (this.#stopped || this.#client !== client || this.#connecting) return;
    this.#client = undefined;
    const wasListening = this.#listening;
    this.#listening = false;
    client.removeAllListeners('notification');
    client.on('error', () => {}); // a late socket error on the dead client must not crash us
    void client.end().catch(() => {});
    const delayMs = this.#backoff.next();
    if (wasListening) {
      this.#options.logger.warn(
        { event: 'listen.lost', ...errorFields(error) },
        'lost the LISTEN connection; changes are missed until it is back',
      );
      this.#options.onLost();
    }
    this.#options.logger.info(
      {
        event: 'listen.reconnect',
        attempt: this.#backoff.attempt,
        delay_ms: delayMs,
        ...errorFields(error),
      },
      `LISTEN reconnect in ${delayMs}ms`,
    );
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, delayMs);
  }
}
