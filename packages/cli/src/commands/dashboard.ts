// `zeroring dashboard DIR`: show a run's --out DIR in the browser, finished or still running
// (new lines in events.jsonl / metrics.jsonl are pushed to open pages as they appear).
import * as fs from 'node:fs';
import type { Command } from 'commander';
import { startDashboard } from '../dashboard/server.ts';
import { DEFAULT_DASHBOARD_PORT, parsePort } from '../dashboard/attach.ts';
import { RunDirError } from '../dashboard/run-reader.ts';
import { examples } from '../help.ts';
import { cliParser } from '../logging.ts';

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description('serve the dashboard of a training run from its --out DIR (live-tails a run still going)')
    .argument('<dir>', 'the --out DIR of `zeroring train` (reads events.jsonl, else metrics.jsonl + summary.json)')
    .option('--port <port>', `port to listen on (0 = any free port)`, cliParser(parsePort), DEFAULT_DASHBOARD_PORT)
    .option('--host <host>', 'address to bind; use 0.0.0.0 to let other machines connect', '127.0.0.1')
    .addHelpText(
      'after',
      examples(
        'zeroring dashboard runs/gpt-ddp',
        '# watch a run that is still training, from another terminal or machine',
        'zeroring dashboard runs/gpt-ddp --port 9000 --host 0.0.0.0',
      ),
    )
    .action(async (dir: string, opts: { port: number; host: string }, command: Command) => {
      if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
        const err = new RunDirError(
          `run directory ${JSON.stringify(dir)} does not exist (expected the --out DIR of a zeroring train run)`,
        );
        command.error(`error: ${err.message}`, { code: err.name });
      }
      const dash = await startDashboard({ port: opts.port, host: opts.host, outDir: dir });
      process.stdout.write(`dashboard for ${dir}: ${dash.url}  (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await dash.close();
    });
}
