import type { Command } from 'commander';

export function registerBench(program: Command): void {
  program.command('bench').description('(not yet implemented)').action(() => {
    throw new Error('zeroring bench: not yet implemented');
  });
}
