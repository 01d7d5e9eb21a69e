import type { Command } from 'commander';

export function registerDashboard(program: Command): void {
  program.command('dashboard').description('(not yet implemented)').action(() => {
    throw new Error('zeroring dashboard: not yet implemented');
  });
}
