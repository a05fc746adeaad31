import type { CommandModule } from 'yargs';
import type { GlobalArgs } from '../context.ts';
import { migrateCommand } from './migrate.ts';

/** Every command, in the order `--help` lists them. */
export const commands: CommandModule<GlobalArgs, never>[] = [migrateCommand as never];
