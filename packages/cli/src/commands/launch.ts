// `zeroring launch`: torchrun for zeroring. Parses the command line and hands it to the launcher
// library (@zeroring/comm launch/), whose result becomes our exit status.
import { InvalidArgumentError, type Command } from 'commander';
import { ConfigError, launch } from '@zeroring/comm';
import { examples } from '../help.ts';
import { addRendezvousOptions, rendezvousOptions, type RendezvousFlags } from '../rendezvous-flags.ts';

function intArg(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        `${name} '${value}' is not an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '∞' : max}]`,
      );
    }
    return n;
  };
}

interface LaunchFlags extends RendezvousFlags {
  nprocPerNode: number;
  masterAddr?: string;
  masterPort?: number;
  maxRestarts: number;
  gracePeriod: number;
}

export function registerLaunch(program: Command): void {
  // Options after SCRIPT belong to the script, not to us (passThroughOptions needs this on the parent).
  program.enablePositionalOptions();
  const cmd = program
    .command('launch')
    .description('start N worker processes with torchrun-style environment (RANK, WORLD_SIZE, MASTER_ADDR, ...)')
    .requiredOption('--nproc-per-node <n>', 'workers on this node', intArg('--nproc-per-node', 1));
  addRendezvousOptions(cmd)
    .option(
      '--node-rank <r>',
      "this node's index in [0, nnodes) (default 0); elastic: 0 hosts the launchers' store, others " +
        'get their index in join order',
      intArg('--node-rank', 0),
    )
    .option('--master-addr <host>', 'address of node 0 (rendezvous store); default 127.0.0.1 on one node')
    .option(
      '--master-port <port>',
      'rendezvous port; default a free port on one node',
      intArg('--master-port', 1, 65535),
    )
    .option(
      '--max-restarts <k>',
      'restart the local group after a failure up to K times',
      intArg('--max-restarts', 0),
      0,
    )
    .option(
      '--grace-period <ms>',
      'milliseconds between SIGTERM and SIGKILL when stopping workers',
      intArg('--grace-period', 0),
      5000,
    )
    .argument('<script>', 'worker script (.ts, .js or .mjs)')
    .argument('[args...]', 'arguments passed to every worker')
    .passThroughOptions()
    .addHelpText(
      'after',
      '\nWorkers get RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, ZERORING_TOKEN\n' +
        '(random unless exported; required for --nnodes > 1) and ZERORING_RESTART_COUNT.\n' +
        'With --nnodes MIN:MAX the launchers meet at --master-addr:--master-port (hosted by the launcher on\n' +
        'that machine), form the world from the nodes that came, and re-form it when a node dies or joins\n' +
        "(up to --max-restarts times); the master node's launcher dying ends the job (docs/elastic.md).\n" +
        examples(
          'zeroring launch --nproc-per-node 2 examples/allreduce-hello/main.ts',
          'ZERORING_TOKEN=secret zeroring launch --nproc-per-node 2 --nnodes ' +
            '2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500 train.ts',
          '# elastic: the same command on 2 to 4 nodes; each re-forms the world when a node leaves',
          'ZERORING_TOKEN=secret zeroring launch --nproc-per-node 2 --nnodes 2:4 --max-restarts 3 ' +
            '--master-addr 10.0.0.1 --master-port 29500 train.ts',
        ),
    )
    .action(async (script: string, args: string[], flags: LaunchFlags) => {
      const result = await launch({
        nprocPerNode: flags.nprocPerNode,
        ...rendezvousOptions(flags),
        nodeRank: flags.nodeRank,
        masterAddr: flags.masterAddr,
        masterPort: flags.masterPort,
        maxRestarts: flags.maxRestarts,
        gracePeriodMs: flags.gracePeriod,
        script,
        args,
      }).catch((err: unknown) => {
        // Bad input is the user's to fix: say what, without a stack trace.
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`zeroring launch: ${err.message}\n`);
        return { exitCode: 2 };
      });
      process.exitCode = result.exitCode;
    });
}
