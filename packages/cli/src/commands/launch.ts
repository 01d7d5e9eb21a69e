import type { Command } from 'commander';

export function registerLaunch(program: Command): void {
  program.command('launch').description('(not yet implemented)').action(() => {
    throw new Error('zeroring launch: not yet implemented');
  });
}
