import cliProgress from 'cli-progress';
import type { CommandModule } from 'yargs';
import { formatDuration } from '../../config/duration.ts';
import { connectOrThrow } from '../../db/connect.ts';
import { createClient } from '../../db/pool.ts';
import {
  DEFAULT_FANOUT,
  DEFAULT_INACTIVE_RATIO,
  DEFAULT_ROOTS,
  type SeedProgress,
  seedHierarchy,
} from '../../seed/seed-hierarchy.ts';
import { COMMAND_LINE_ONLY_NOTE } from '../command-line-only.ts';
import { type GlobalArgs, runCommand } from '../context.ts';
import { EXIT } from '../exit-codes.ts';
import { jsonOption } from '../options.ts';
import { printJson, printLine } from '../print.ts';

interface SeedArgs extends GlobalArgs {
  entities: number;
  fanout: number;
  roots: number;
  'inactive-ratio': number;
  'random-seed'?: number;
  replace: boolean;
  json: boolean;
}

/** `hierarchy-db seed`: a synthetic hierarchy, generated on the server. */
export const seedCommand: CommandModule<GlobalArgs, SeedArgs> = {
  command: 'seed',
  describe: 'fill entities with a synthetic hierarchy (deterministic with --random-seed)',
  builder: (y) =>
    y
      .option('entities', {
        type: 'number',
        demandOption: true,
        describe: 'how many entities to create',
      })
      .option('fanout', {
        type: 'number',
        default: DEFAULT_FANOUT,
        describe: 'mean children per non-leaf entity',
      })
      .option('roots', { type: 'number', default: DEFAULT_ROOTS, describe: 'number of roots' })
      .option('inactive-ratio', {
        type: 'number',
        default: DEFAULT_INACTIVE_RATIO,
        describe: 'share of entities created inactive, 0..1',
      })
      .option('random-seed', {
        type: 'number',
        describe: 'same seed, same rows (default: random, printed at the end)',
      })
      .option('replace', {
        type: 'boolean',
        default: false,
        describe: `delete the existing entities first (otherwise a non-empty table is refused) ${COMMAND_LINE_ONLY_NOTE}`,
      })
      .option(
        'json',
        jsonOption(
          'one JSON document on stdout: { "entities", "roots", "depth", "inactive", "replaced", "random_seed", "duration_ms" }',
        ),
      ) as never,
  handler: (args) =>
    runCommand(
      args,
      async (ctx) => {
        const progress = progressReporter(args.entities);
        const client = createClient(ctx.connection);
        await connectOrThrow(client, ctx.connection.target);
        try {
          const result = await seedHierarchy(client, {
            entities: args.entities,
            fanout: args.fanout,
            roots: args.roots,
            inactiveRatio: args['inactive-ratio'],
            replace: args.replace,
            onProgress: progress.update,
            ...(args['random-seed'] !== undefined ? { randomSeed: args['random-seed'] } : {}),
          });
          progress.stop();
          if (args.json) {
            printJson({
              entities: result.entities,
              roots: result.roots,
              depth: result.depth,
              inactive: result.inactive,
              replaced: result.replaced,
              random_seed: result.randomSeed,
              duration_ms: result.durationMs,
            });
            return EXIT.OK;
          }
          const inactivePercent = ((100 * result.inactive) / result.entities).toFixed(1);
          printLine(
            `seeded ${result.entities} entities in ${formatDuration(result.durationMs)}: ` +
              `${result.roots} roots, depth ${result.depth}, ${result.inactive} inactive (${inactivePercent}%), ` +
              `random seed ${result.randomSeed}` +
              (result.replaced > 0 ? `; replaced ${result.replaced} existing` : ''),
          );
          printLine('the views are now stale: run `hierarchy-db refresh` to bring them up to date');
          return EXIT.OK;
        } finally {
          progress.stop();
          await client.end().catch(() => {});
        }
      },
      { commandLineOnly: ['replace'] },
    ),
};

/**
 * A progress bar on a terminal; plain lines on stderr otherwise (logs and CI output stay
 * readable: one line per step, no carriage returns).
 */
function progressReporter(total: number): {
  update: (p: SeedProgress) => void;
  stop: () => void;
} {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: 'seed [{bar}] {percentage}% | {value}/{total} entities | {step}',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    let stopped = false;
    return {
      update: (p) => {
        if (stopped) return;
        if (!started) {
          bar.start(p.total || total, 0, { step: '' });
          started = true;
        }
        bar.update(p.inserted, { step: p.detail });
      },
      stop: () => {
        if (started && !stopped) bar.stop();
        stopped = true;
      },
    };
  }
  return {
    update: (p) => {
      let line = 'analyzing';
      if (p.phase === 'insert') {
        const percent = Math.floor((100 * p.inserted) / (p.total || total));
        line = `inserted ${p.inserted}/${p.total} (${percent}%), ${p.detail}`;
      } else if (p.phase === 'rebuild') {
        line = `rebuilding ${p.detail}`;
      }
      process.stderr.write(`seed: ${line}\n`);
    },
    stop: () => {},
  };
}
