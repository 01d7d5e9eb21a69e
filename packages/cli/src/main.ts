// zeroring command line: one commander program, one module per command (commands/*.ts).
import { Command } from 'commander';
import { registerLaunch } from './commands/launch.ts';
import { registerTrain } from './commands/train.ts';
import { registerBench } from './commands/bench.ts';
import { registerSample } from './commands/sample.ts';
import { registerEstimateMemory } from './commands/estimate-memory.ts';
import { registerDashboard } from './commands/dashboard.ts';
import { registerConsolidate } from './commands/consolidate.ts';
import { addLoggingOptions } from './logging.ts';
import { getLogger, logFailure } from '@zeroring/core';

const program = new Command('zeroring')
  .description('Distributed data-parallel training for TensorFlow.js: DDP, ZeRO-1/2/3, ring collectives')
  .showHelpAfterError();

registerLaunch(program);
registerTrain(program);
registerBench(program);
registerSample(program);
registerEstimateMemory(program);
registerDashboard(program);
registerConsolidate(program);
addLoggingOptions(program); // after the commands: it adds --log-level to each of them

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // One line for the user; the stack trace only at --log-level debug.
  const command = program.args[0] ?? 'zeroring';
  logFailure(getLogger({ cmd: command }), err, `zeroring ${command} failed`);
  process.exitCode = 1;
  // Whatever a failed command left open (a server, a worker thread) must not keep the process.
  setTimeout(() => process.exit(1), 2000).unref();
}
