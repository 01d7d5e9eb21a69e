import type { Command } from 'commander';

export function registerEstimateMemory(program: Command): void {
  program.command('estimate-memory').description('(not yet implemented)').action(() => {
    throw new Error('zeroring estimate-memory: not yet implemented');
  });
}
