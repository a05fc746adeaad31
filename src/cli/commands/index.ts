import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.ts';
import { daemonCommand } from './daemon.ts';
import { demoCommand } from './demo.ts';
import { historyCommand } from './history.ts';
import { migrateCommand } from './migrate.ts';
import { refreshCommand } from './refresh.ts';
import { repairCommand } from './repair.ts';
import { seedCommand } from './seed.ts';
import { sloCommand } from './slo.ts';
import { statusCommand } from './status.ts';
import { verifyCommand } from './verify.ts';
import { viewsCommand } from './views.ts';

/** Every command, in the order `--help` lists them. */
export const commands: CommandModule<GlobalArgs, never>[] = [
  migrateCommand as never,
  refreshCommand as never,
  statusCommand as never,
  viewsCommand as never,
  historyCommand as never,
  verifyCommand as never,
  repairCommand as never,
  daemonCommand as never,
  seedCommand as never,
  sloCommand as never,
  demoCommand as never,
];
