import cron, { type ScheduledTask } from 'node-cron';
import { errorFields } from '../logging/error-fields.ts';
import type { Logger } from '../logging/logger.ts';

/** Options for {@link CronSchedule}. */
export interface CronScheduleOptions {
  /** A validated expression (see `validateSchedule`). */
  expression: string;
  logger: Logger;
  /** A tick is due: `slot` is its scheduled time, `periodMs` the time to the following tick. */
  onTick: (slot: Date, periodMs: number) => void;
}

/**
 * The cron schedule, on node-cron 4 (5 fields, or 6 with seconds first; evaluated in the process's
 * time zone, `TZ`).
 *
 * The task body only hands the tick to the refresh loop and returns, so node-cron never sees an
 * overlap: coalescing is the loop's job, where a tick that arrives during a refresh becomes one
 * follow-up run (node-cron's own `noOverlap` would drop it instead). A tick node-cron reports as
 * missed (the event loop was blocked past its 1 s tolerance) is handed over the same way, so
 * missed ticks also coalesce into one run rather than being lost or replayed.
 */
export class CronSchedule {
  readonly #task: ScheduledTask;
  readonly #options: CronScheduleOptions;

  constructor(options: CronScheduleOptions) {
    this.#options = options;
    const logger = options.logger;
    this.#task = cron.createTask(options.expression, (context) => this.#tick(context.date, false), {
      name: 'hierarchy-db-refresh',
      // node-cron's default logger writes colored console lines; ours are pino JSON.
      logger: {
        info: (message) => logger.debug({ event: 'cron.log' }, message),
        warn: (message) => logger.debug({ event: 'cron.log' }, message),
        error: (message) =>
          logger.error({ event: 'cron.log', ...errorFields(message) }, String(message)),
        debug: (message) => logger.debug({ event: 'cron.log' }, String(message)),
      },
    });
    this.#task.on('execution:missed', (context) => this.#tick(context.date, true));
  }

  start(): void {
    void this.#task.start();
    const next = this.#task.getNextRun();
    this.#options.logger.info(
      {
        event: 'schedule.started',
        schedule: this.#options.expression,
        next_run: next?.toISOString(),
      },
      `schedule '${this.#options.expression}' started`,
    );
  }

  /** No more ticks. */
  stop(): void {
    void this.#task.destroy();
  }

  #tick(slot: Date, missed: boolean): void {
    // The tick's period ends at the next tick still to come.
    const following = this.#task.getNextRuns(1)[0];
    const periodMs = following ? Math.max(1_000, following.getTime() - slot.getTime()) : 60_000;
    // A tick itself is routine (debug); what it refreshed is logged at info by the refresh.
    const fields = {
      event: missed ? 'schedule.missed' : 'schedule.tick',
      slot: slot.toISOString(),
    };
    if (missed) {
      this.#options.logger.warn(fields, 'schedule tick missed (event loop blocked); coalesced');
    } else this.#options.logger.debug(fields, 'schedule tick');
    this.#options.onTick(slot, periodMs);
  }
}
