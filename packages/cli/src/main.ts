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

await program.parseAsync(process.argv);
