import type { Command } from 'commander';

export function registerSample(program: Command): void {
  program.command('sample').description('(not yet implemented)').action(() => {
    throw new Error('zeroring sample: not yet implemented');
  });
}
