// `zeroring bench collectives`: launches N workers running @zeroring/comm's collectives benchmark,
// which print the nccl-tests table (rank 0's lines unprefixed) and write JSON where --json says,
// by default collectives-<nproc>.json in the current directory (a user's run never overwrites the
// project's recorded results). The exit status is non-zero when any result was wrong.
import { resolve as resolvePath } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import {
  BENCH_OPS,
  ConfigError,
  collectivesBenchWorker,
  launch,
  parseBytes,
  type BenchConfig,
  type BenchOp,
} from '@zeroring/comm';
import { examples } from '../help.ts';

function wrap<T>(parse: (v: string) => T) {
  return (v: string): T => {
    try {
      return parse(v);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

function intAtLeast(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min) throw new InvalidArgumentError(`${name} '${v}' is not an integer >= ${min}`);
    return n;
  };
}

function parseOps(v: string): BenchOp[] {
  const ops = v.split(',').map((s) => s.trim().toLowerCase().replace(/[-_]/g, ''));
  for (const op of ops) {
    if (!(BENCH_OPS as readonly string[]).includes(op)) {
      throw new InvalidArgumentError(`op '${op}' is unknown, expected some of ${BENCH_OPS.join(',')}`);
    }
  }
  return ops as BenchOp[];
}

/** The parsed flags: the worker's config plus the number of ranks. */
interface CollectivesFlags extends BenchConfig {
  nproc: number;
}

export function registerBench(program: Command): void {
  const bench = program.command('bench').description('benchmarks (collectives)');
  bench
    .command('collectives')
    .description(
      'nccl-tests-style table of all-reduce / reduce-scatter / all-gather / broadcast vs a raw TCP ring ceiling',
    )
    .addHelpText(
      'after',
      examples(
        'zeroring bench collectives --nproc 2',
        'zeroring bench collectives --nproc 4 --ops allreduce --min-bytes 4K --max-bytes 16M --json allreduce-4.json',
      ),
    )
    .requiredOption('--nproc <n>', 'ranks (worker processes) on this machine', intAtLeast('--nproc', 1))
    .option('--ops <list>', 'comma-separated ops', parseOps, [...BENCH_OPS])
    .option('--min-bytes <size>', 'smallest message (e.g. 1K)', wrap(parseBytes), 1024)
    .option('--max-bytes <size>', 'largest message (e.g. 64M)', wrap(parseBytes), 64 * 1024 * 1024)
    .option('--step-factor <k>', 'size multiplier between rows (2 or 4 ...)', intAtLeast('--step-factor', 2), 2)
    .option('--iters <k>', 'timed iterations per size (default: 100 small ... 10 large)', intAtLeast('--iters', 1))
    .option('--warmup <k>', 'untimed iterations per size', intAtLeast('--warmup', 0), 3)
    .option('--pump-bytes <size>', 'bytes per link per ceiling repetition', wrap(parseBytes), 64 * 1024 * 1024)
    .option('--pump-reps <k>', 'ceiling repetitions', intAtLeast('--pump-reps', 1), 7)
    .option('--json <file>', 'results file (default: collectives-<nproc>.json in the current directory)')
    .action(async (flags: CollectivesFlags) => {
      if (flags.maxBytes < flags.minBytes) {
        process.stderr.write(`zeroring bench: --max-bytes ${flags.maxBytes} is below --min-bytes ${flags.minBytes}\n`);
        process.exitCode = 2;
        return;
      }
      const cfg: BenchConfig = {
        ops: flags.ops,
        minBytes: flags.minBytes,
        maxBytes: flags.maxBytes,
        stepFactor: flags.stepFactor,
        iters: flags.iters,
        warmup: flags.warmup,
        pumpBytes: flags.pumpBytes,
        pumpReps: flags.pumpReps,
        json: resolvePath(flags.json ?? `collectives-${flags.nproc}.json`),
      };
      const result = await launch({
        nprocPerNode: flags.nproc,
        script: collectivesBenchWorker(),
        args: [JSON.stringify(cfg)],
        linePrefix: (rank) => (rank === 0 ? '' : `[rank ${rank}] `),
      }).catch((err: unknown) => {
        if (!(err instanceof ConfigError)) throw err;
        process.stderr.write(`zeroring bench: ${err.message}\n`);
        return { exitCode: 2 };
      });
      process.exitCode = result.exitCode;
    });
}
