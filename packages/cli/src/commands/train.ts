import type { Command } from 'commander';

export function registerTrain(program: Command): void {
  program.command('train').description('(not yet implemented)').action(() => {
    throw new Error('zeroring train: not yet implemented');
  });
}
