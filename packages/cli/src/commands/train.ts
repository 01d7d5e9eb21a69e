// `zeroring train`: train the toy GPT. With --nproc 1 the job runs in this process; with
// --nproc N the launcher (@zeroring/comm launch) starts N workers (train-worker.ts) that join a
// process group and run the same job with a distributed strategy.
//
// The dashboard (--dashboard) belongs to this command rather than to a worker: it keeps serving
// the finished run after training until Ctrl-C, which a worker could only do by holding the
// launcher's job open. In-process runs publish to it directly; with workers, rank 0 appends its
// events to a private feed directory that the dashboard follows (what `zeroring dashboard DIR`
// does with a run's --out DIR), so the page also lives on across --max-restarts.
//
// Started by another launcher with RANK and WORLD_SIZE set (srun, a Kubernetes Indexed Job), the
// command runs as that one rank instead (rank-job.ts), as a torch script does under srun.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  COMM_HOOK_NAMES,
  ConfigError,
  launch,
  POWERSGD_DEFAULTS,
  type CommHookName,
  type LaunchResult,
} from '@zeroring/comm';
import { BACKEND_KINDS, type BackendKind } from '@zeroring/backend';
import { loadCorpus, presets, type PresetName } from '@zeroring/gpt';
import {
  needsProcessGroup,
  openConsolidated,
  resolveCheckpointDir,
  PIPE_SCHEDULES,
  STRATEGY_NAMES,
  type OnTrainEvent,
  type PipeScheduleName,
  type StrategyName,
} from '@zeroring/train';
import { attachDashboard, dashboardOption, resolveDashboardPort } from '../dashboard/attach.ts';
import { serveFinishedRun } from '../dashboard/linger.ts';
import { PRESET_DEFAULTS, TrainJobError, runTrainJob, type TrainJobOptions } from '../train-job.ts';
import { examples } from '../help.ts';
import { checkPipelineJob } from '../pipeline-job.ts';
import { quietUnlessRankZero, runRank, startedAsRank } from '../rank-job.ts';
import { addRendezvousOptions, rendezvousOptions, type RendezvousFlags } from '../rendezvous-flags.ts';

function intArg(name: string, min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} '${value}' is not an integer >= ${min}`);
    return n;
  };
}

function intList(name: string) {
  return (value: string): number[] => {
    const parts = value.split(',');
    if (!parts.every((v) => /^\s*\d+\s*$/.test(v) && Number(v) >= 1))
      throw new InvalidArgumentError(`${name} '${value}' is not a comma-separated list of integers >= 1`);
    return parts.map(Number);
  };
}

function positiveNumber(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${name} '${value}' is not a positive number`);
    return n;
  };
}

interface TrainFlags extends RendezvousFlags {
  nproc: number;
  strategy: StrategyName;
  offload?: boolean;
  commHook: CommHookName;
  powersgdRank?: number;
  powersgdStart?: number;
  backend: BackendKind;
  model: PresetName;
  data?: string;
  steps?: number;
  batchSize?: number;
  gradAccum?: number;
  batchSplit?: number[];
  balance?: boolean;
  pp: number;
  microBatches?: number;
  schedule: PipeScheduleName;
  virtualStages?: number;
  ppBalance: 'params' | 'time';
  gpuCounts?: boolean;
  lr?: number;
  seed: number;
  out?: string;
  resume?: boolean;
  resumeFrom?: string;
  skipNonfinite?: boolean;
  evalInterval?: number;
  evalBatches: number;
  warmupSteps?: number;
  checkpointInterval: number;
  sampleTokens: number;
  stopAfter?: number;
  masterAddr?: string;
  masterPort?: number;
  maxRestarts: number;
  dashboard?: number | boolean;
  dashboardHost?: string;
}

/**
 * --comm-hook belongs to DDP's bucket all-reduce, --powersgd-* to --comm-hook powersgd: anything
 * else is refused by name before a worker starts, rather than silently ignored.
 */
function commHookOptions(f: TrainFlags): Pick<TrainJobOptions, 'commHook' | 'powerSGD'> {
  if (f.commHook !== 'none' && (f.strategy !== 'ddp' || f.offload)) {
    const got = `--strategy ${f.strategy}${f.offload ? ' --offload' : ''}`;
    throw new ConfigError(
      `--comm-hook ${f.commHook} with ${got}: comm hooks replace DDP's bucket all-reduce, ` +
        'expected --strategy ddp without --offload, or --comm-hook none',
    );
  }
  const given = [
    f.powersgdRank !== undefined && `--powersgd-rank ${f.powersgdRank}`,
    f.powersgdStart !== undefined && `--powersgd-start ${f.powersgdStart}`,
  ].filter((g): g is string => g !== false);
  if (f.commHook !== 'powersgd') {
    if (given.length > 0) {
      throw new ConfigError(`${given.join(' and ')} with --comm-hook ${f.commHook}, expected --comm-hook powersgd`);
    }
    return f.commHook === 'none' ? {} : { commHook: f.commHook };
  }
  return {
    commHook: 'powersgd',
    powerSGD: {
      rank: f.powersgdRank ?? POWERSGD_DEFAULTS.rank,
      startStep: f.powersgdStart ?? POWERSGD_DEFAULTS.startStep,
    },
  };
}

export function toJobOptions(f: TrainFlags): TrainJobOptions {
  const d = PRESET_DEFAULTS[f.model];
  return {
    nproc: f.nproc,
    strategy: f.strategy,
    offload: f.offload ?? false,
    ...commHookOptions(f),
    backend: f.backend,
    model: f.model,
    data: f.data,
    steps: f.steps ?? d.steps,
    batchSize: f.batchSize ?? d.batchSize,
    gradAccum: f.gradAccum,
    batchSplit: f.batchSplit,
    balance: f.balance,
    ...(f.pp > 1 ? pipelineOptions(f) : {}),
    countGpuWork: f.gpuCounts ?? false,
    lr: f.lr ?? d.lr,
    seed: f.seed,
    out: f.out,
    resume: f.resume ?? false,
    resumeFrom: f.resumeFrom,
    skipNonFinite: f.skipNonfinite ?? false,
    evalInterval: f.evalInterval ?? d.evalInterval,
    evalBatches: f.evalBatches,
    warmupSteps: f.warmupSteps ?? d.warmupSteps,
    checkpointInterval: f.checkpointInterval,
    sampleTokens: f.sampleTokens,
    stopAfter: f.stopAfter,
  };
}

type PipelineFlags = 'pp' | 'microBatches' | 'schedule' | 'virtualStages' | 'ppBalance';

/** The pipeline's part of the job (--pp above 1). */
function pipelineOptions(f: TrainFlags): Pick<TrainJobOptions, PipelineFlags> {
  const chunks = f.schedule === 'interleaved' ? { virtualStages: f.virtualStages ?? 2 } : {};
  return {
    pp: f.pp,
    microBatches: f.microBatches ?? 2 * f.pp,
    schedule: f.schedule,
    ...chunks,
    ppBalance: f.ppBalance,
  };
}

/**
 * What every worker would find wrong, found once here before any worker starts: a user meets one
 * line from this process instead of the same failure from every rank.
 */
async function checkBeforeLaunch(f: TrainFlags, job: TrainJobOptions): Promise<void> {
  if (job.data !== undefined) loadCorpus(job.data);
  // An elastic world's size is known per round; its workers check it (gridGroups).
  if (typeof f.nnodes === 'number') checkPipelineJob(job, f.nproc * f.nnodes);
  else checkPipelineJob(job, job.pp ?? 1);
  if (job.resume) {
    if (!job.out) throw new TrainJobError('--resume needs --out DIR, the directory of the run to continue');
    if (job.resumeFrom) throw new TrainJobError('--resume and --resume-from both given, expected one of them');
    await resolveCheckpointDir(job.out, undefined, { whole: false });
  }
  if (job.resumeFrom) await openConsolidated(job.resumeFrom);
}

/** --max-restarts needs the launcher even for one process: it is the one that restarts. */
function runsInProcess(f: TrainFlags, job: TrainJobOptions): boolean {
  const single = f.nproc === 1 && f.nnodes === 1 && f.maxRestarts === 0 && (job.pp ?? 1) === 1;
  return single && !needsProcessGroup(job.strategy, job.offload);
}

/** The worker entry beside this command: train-worker.js when built, train-worker.ts in the sources. */
function trainWorkerScript(): string {
  const ext = path.extname(fileURLToPath(import.meta.url));
  return fileURLToPath(new URL(`../train-worker${ext}`, import.meta.url));
}

function launchWorkers(f: TrainFlags, job: TrainJobOptions): Promise<LaunchResult> {
  return launch({
    nprocPerNode: f.nproc,
    ...rendezvousOptions(f),
    nodeRank: f.nodeRank,
    masterAddr: f.masterAddr,
    masterPort: f.masterPort,
    maxRestarts: f.maxRestarts,
    script: trainWorkerScript(),
    args: [JSON.stringify(job)],
  });
}

/** Trains, in this process or through the launcher; resolves with the outcome and sets the exit code. */
async function trainJob(f: TrainFlags, job: TrainJobOptions, onEvent?: OnTrainEvent): Promise<LaunchResult['outcome']> {
  if (runsInProcess(f, job)) {
    await runTrainJob(job, { onEvent });
    return 'succeeded';
  }
  await checkBeforeLaunch(f, job);
  const result = await launchWorkers(f, job);
  process.exitCode = result.exitCode;
  return result.outcome;
}

/** Training with the dashboard; after a successful run it serves the finished run until Ctrl-C. */
async function trainWithDashboard(f: TrainFlags, job: TrainJobOptions, port: number): Promise<void> {
  const inProcess = runsInProcess(f, job);
  const feed = inProcess ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'zeroring-dashboard-'));
  try {
    const dash = await attachDashboard(port, { host: f.dashboardHost, outDir: feed });
    let outcome: LaunchResult['outcome'];
    try {
      outcome = await trainJob(f, { ...job, dashboardFeed: feed }, inProcess ? dash.onEvent : undefined);
    } catch (err) {
      await dash.close();
      throw err;
    }
    // A failed or interrupted run ends the command now: its exit status is what matters then.
    if (outcome === 'succeeded') await serveFinishedRun(dash);
    else await dash.close();
  } finally {
    if (feed !== undefined) fs.rmSync(feed, { recursive: true, force: true });
  }
}

/**
 * A process started as one rank must not be told how to start or place workers: its launcher
 * did that, through the environment. Each such flag is named rather than silently ignored.
 */
function assertNoLaunchFlags(f: TrainFlags): void {
  const given = [
    f.nproc !== 1 && `--nproc ${f.nproc}`,
    f.nnodes !== 1 && `--nnodes ${typeof f.nnodes === 'number' ? f.nnodes : `${f.nnodes.min}:${f.nnodes.max}`}`,
    f.nodeRank !== undefined && `--node-rank ${f.nodeRank}`,
    f.masterAddr !== undefined && `--master-addr ${f.masterAddr}`,
    f.masterPort !== undefined && `--master-port ${f.masterPort}`,
    f.maxRestarts !== 0 && `--max-restarts ${f.maxRestarts}`,
    f.dashboard !== undefined && '--dashboard',
  ].filter((g): g is string => g !== false);
  if (given.length === 0) return;
  const { RANK, WORLD_SIZE } = process.env;
  throw new ConfigError(
    `RANK=${RANK} and WORLD_SIZE=${WORLD_SIZE} are set, so this process runs as that one rank, but ` +
      `${given.join(', ')} would start or place workers: expected none of --nproc, --nnodes, --node-rank, ` +
      '--master-addr, --master-port, --max-restarts, --dashboard (MASTER_ADDR and MASTER_PORT come from ' +
      'the environment; `zeroring dashboard DIR` follows a run through its --out DIR)',
  );
}

export function registerTrain(program: Command): void {
  const cmd = program
    .command('train')
    .description('train the toy GPT (Moby Dick by default) on one or more worker processes')
    .addHelpText(
      'after',
      examples(
        '# the default job: 2 workers, tiny GPT, Moby Dick, DDP',
        'zeroring train --nproc 2',
        'zeroring train --steps 300 --out runs/tiny',
        'zeroring train --nproc 2 --strategy zero2 --out runs/z2 --dashboard',
        'zeroring train --nproc 4 --strategy zero3 --offload --out runs/z3 --resume',
        '# DDP with gradients sent as bfloat16 (half the bytes), or low-rank with PowerSGD',
        'zeroring train --nproc 2 --comm-hook bf16',
        'zeroring train --nproc 4 --comm-hook powersgd --powersgd-rank 2 --powersgd-start 50',
        '# 2 pipelines of 2 stages (1F1B, 8 micro-batches each), DDP across the pipelines',
        'zeroring train --nproc 4 --pp 2 --micro-batches 8 --out runs/pp',
        '# the 85 M-parameter GPT on a GPU; first see what batch its memory holds',
        'zeroring estimate-memory --model gpt2 --nproc 1 --batch-size 16',
        'zeroring train --backend webgpu --model gpt2 --batch-size 16 --out runs/gpt2',
        '# node 0 of two (same command with --node-rank 1 on the other node; export the same ZERORING_TOKEN on both)',
        'zeroring train --nproc 2 --nnodes 2 --node-rank 0 --master-addr 10.0.0.1 --master-port 29500',
        '# one rank of a job that another launcher starts (srun, a Kubernetes Indexed Job): with RANK, WORLD_SIZE,',
        '# MASTER_ADDR, MASTER_PORT and ZERORING_TOKEN set, the command runs as that rank (examples/slurm)',
        'RANK=1 WORLD_SIZE=2 MASTER_ADDR=10.0.0.1 MASTER_PORT=29500 zeroring train --out runs/shared',
        '# elastic, on 2 or 3 nodes (the same command on each): a lost node re-forms the world, which',
        '# resumes from the newest checkpoint (docs/elastic.md)',
        'zeroring train --nproc 2 --nnodes 2:3 --max-restarts 2 --master-addr 10.0.0.1 --master-port 29500 ' +
          '--out runs/elastic --checkpoint-interval 20',
      ),
    )
    .addOption(
      new Option('--nproc <n>', 'worker processes on this node (none with RANK and WORLD_SIZE set: then this is one)')
        .default(1)
        .argParser(intArg('--nproc', 1)),
    )
    .addOption(new Option('--strategy <name>', 'data-parallel strategy').choices(STRATEGY_NAMES).default('ddp'))
    .option('--offload', 'keep optimizer state on the host (CPU AdamW)')
    .addOption(
      new Option(
        '--comm-hook <name>',
        'how DDP averages each gradient bucket: none (float32 all-reduce), bf16 or fp16 (16-bit on the wire, ' +
          'half the bytes), powersgd (low-rank, with error feedback); --strategy ddp only',
      )
        .choices(COMM_HOOK_NAMES)
        .default('none'),
    )
    .option(
      '--powersgd-rank <r>',
      `rank of PowerSGD's approximation of each gradient matrix (default ${POWERSGD_DEFAULTS.rank})`,
      intArg('--powersgd-rank', 1),
    )
    .option(
      '--powersgd-start <k>',
      `steps of plain all-reduce before PowerSGD starts compressing (default ${POWERSGD_DEFAULTS.startStep})`,
      intArg('--powersgd-start', 0),
    )
    .addOption(new Option('--backend <name>', 'tfjs backend').choices(BACKEND_KINDS).default('auto'))
    .addOption(
      new Option(
        '--model <preset>',
        'GPT size: tiny 0.4 M parameters; small 10.8 M (about 5.5 s a step on one CPU core) and gpt2 85 M ' +
          '(C 768, 12 layers, T 256) are meant for GPUs',
      )
        .choices(Object.keys(presets))
        .default('tiny'),
    )
    .option('--data <file>', 'train on this text file instead of Moby Dick')
    .option('--steps <n>', 'optimizer steps (tiny: 300, small: 2000, gpt2: 5000)', intArg('--steps', 1))
    .option(
      '--batch-size <n>',
      'sequences per rank per step (tiny: 16, small: 8, gpt2: 16); on a GPU the activations grow with it: ' +
        '`zeroring estimate-memory --model M --batch-size B` prints the bytes per rank, to choose B for its memory',
      intArg('--batch-size', 1),
    )
    .option('--grad-accum <k>', 'micro-batches accumulated into each optimizer step', intArg('--grad-accum', 1))
    .option(
      '--pp <P>',
      'pipeline stages: the GPT cut into P stages on P ranks (--nproc a multiple of P)',
      intArg('--pp', 1),
      1,
    )
    .option(
      '--micro-batches <M>',
      'micro-batches of --batch-size windows per step through each pipeline (default 2 x --pp)',
      intArg('--micro-batches', 1),
    )
    .addOption(new Option('--schedule <name>', 'pipeline schedule').choices(PIPE_SCHEDULES).default('1f1b'))
    .option(
      '--virtual-stages <V>',
      'with --schedule interleaved: model chunks per stage (default 2)',
      intArg('--virtual-stages', 1),
    )
    .addOption(
      new Option('--pp-balance <by>', 'cut the stages by parameter count or by measured time')
        .choices(['params', 'time'])
        .default('params'),
    )
    .option(
      '--batch-split <counts>',
      'sequences each rank reads per micro-batch, e.g. 12,20 (summing to world size x ' +
        'batch size): for machines of unequal speed; the step is the same mean gradient',
      intList('--batch-split'),
    )
    .option(
      '--balance',
      'move sequences of each step toward the ranks measured faster (starting from --batch-split or even)',
    )
    .option(
      '--lr <lr>',
      'peak learning rate (tiny: 3e-3, small: 1e-3, gpt2: 6e-4); warmup then cosine to lr/10',
      positiveNumber('--lr'),
    )
    .option('--seed <n>', 'seed for initialisation, data order and sampling', intArg('--seed', 0), 1337)
    .option('--out <dir>', 'write metrics.jsonl, summary.json, events.jsonl and checkpoints/ here')
    .option('--resume', 'continue from the newest complete checkpoint in --out')
    .option('--resume-from <file>', 'continue from a file of zeroring consolidate (at any --nproc and --strategy)')
    .option(
      '--skip-nonfinite',
      'skip a step whose gradients hold NaN/Inf on any rank, on all ranks alike (default: fail naming the step)',
    )
    .option(
      '--eval-interval <k>',
      'validation loss every K steps (tiny: 50, small: 200, gpt2: 250)',
      intArg('--eval-interval', 1),
    )
    .option('--eval-batches <n>', 'batches in the fixed validation set', intArg('--eval-batches', 1), 8)
    .option('--warmup-steps <n>', 'linear warmup steps (tiny: 20, small: 100, gpt2: 100)', intArg('--warmup-steps', 0))
    .option(
      '--checkpoint-interval <k>',
      'save a checkpoint every K steps (0: only at the end)',
      intArg('--checkpoint-interval', 0),
      0,
    )
    .option(
      '--sample-tokens <n>',
      'characters of sample text printed at the end (0: none)',
      intArg('--sample-tokens', 0),
      300,
    )
    .option('--gpu-counts', "add each step's WebGPU dispatches, submissions and read-backs to metrics.jsonl")
    .addOption(
      new Option('--stop-after <n>', 'stop after N steps of the schedule, as if interrupted (resume later)')
        .argParser(intArg('--stop-after', 1))
        .hideHelp(),
    )
    .option(
      '--node-rank <r>',
      "this node's index (default 0; elastic: 0 hosts the launchers' store)",
      intArg('--node-rank', 0),
    )
    .option('--master-addr <host>', 'rendezvous host (rank 0 node)')
    .option('--master-port <port>', 'rendezvous port', intArg('--master-port', 1))
    .option(
      '--max-restarts <k>',
      'restart the workers up to K times after a failure (elastic: re-form the world up to K times)',
      intArg('--max-restarts', 0),
      0,
    );
  addRendezvousOptions(cmd)
    .addOption(dashboardOption())
    .option('--dashboard-host <host>', 'address the dashboard binds (default 127.0.0.1; 0.0.0.0 for other machines)')
    .action(async (flags: TrainFlags) => {
      const job = toJobOptions(flags);
      if (startedAsRank()) {
        assertNoLaunchFlags(flags);
        quietUnlessRankZero();
        // Recorded as the run's --nproc: the ranks on this machine, as the launcher counts them.
        const { LOCAL_WORLD_SIZE, WORLD_SIZE } = process.env;
        return runRank({ ...job, nproc: Number(LOCAL_WORLD_SIZE || WORLD_SIZE) });
      }
      const port = resolveDashboardPort(flags.dashboard);
      // Rank 0 runs on node 0: the other nodes' commands have no events to show.
      if (port !== undefined && (flags.nodeRank ?? 0) === 0) await trainWithDashboard(flags, job, port);
      else await trainJob(flags, job);
    });
}
