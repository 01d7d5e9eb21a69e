// One rank of the training scaling benchmark (main.ts beside it starts 1, 2 or 4 of these
// through launch()). It runs the same trainer as `zeroring train` — GPT preset on Moby Dick,
// LocalStrategy for one process, DDPStrategy for several — without evaluation, checkpoints or
// sampling, and rank 0 prints one `RESULT {json}` line with every step's figures (all ranks
// together, as the trainer reports them) plus rank 0's process CPU time per step.
// With `lockstep` (a control, not a way to train) every rank trains alone with LocalStrategy but
// waits at a barrier with the others before each update, as DDP ranks wait at their gradient
// all-reduce: no gradient is sent, so it measures what synchronising the ranks costs by itself.
import { execFileSync } from 'node:child_process';
import { initBackend, type BackendKind } from '@zeroring/backend';
import { initProcessGroup } from '@zeroring/comm';
import { CharTokenizer, TextDataset, createGPT, gptConfig, loadCorpus, type PresetName } from '@zeroring/gpt';
import {
  DDPStrategy,
  LocalStrategy,
  paramCount,
  train,
  uniqueParams,
  type FinishStepOptions,
  type StepStats,
  type Strategy,
  type TrainEvent,
} from '@zeroring/train';

interface Args {
  model: PresetName;
  batch: number;
  steps: number;
  backend: BackendKind;
  seed: number;
  bucketBytes?: number;
  firstBucketBytes?: number;
  /** Split each step's windows toward the faster rank (the trainer's balanceBatch). */
  balance?: boolean;
  /** Pin each rank (all its threads) to CPU `rank` (balance.ts gives the ranks unequal CPUs). */
  pin?: boolean;
  /** Text file to train on instead of Moby Dick. */
  data?: string;
  /** Ranks train alone but meet at a barrier before each update (see the header). */
  lockstep?: boolean;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
if (args.pin)
  execFileSync('taskset', ['-a', '-p', '-c', String(Number(process.env.RANK ?? 0)), String(process.pid)], {
    stdio: 'ignore',
  });
const quiet = { info() {}, warn() {}, debug() {} };
const backend = await initBackend(args.backend, { logger: quiet });
const pg = await initProcessGroup();
const text = loadCorpus(args.data);
const tokenizer = CharTokenizer.fromText(text);
const data = new TextDataset(tokenizer.encode(text), { seed: args.seed });
const model = createGPT(gptConfig(args.model, tokenizer.vocabSize));

/** The lockstep control: LocalStrategy whose update first waits for every rank (reported as commMs). */
class LockstepStrategy extends LocalStrategy {
  override async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    const t0 = performance.now();
    await pg.barrier();
    const commMs = performance.now() - t0;
    return { ...(await super.finishStep(opts)), commMs };
  }
}
const lockstep = args.lockstep === true && pg.worldSize > 1;
const distributed = pg.worldSize > 1 && !lockstep;
const strategy: Strategy = lockstep
  ? new LockstepStrategy()
  : distributed
    ? new DDPStrategy(pg, { bucketBytes: args.bucketBytes, firstBucketBytes: args.firstBucketBytes })
    : new LocalStrategy();

/** One step as the worker reports it (also read by main.ts). */
export interface StepRecord {
  step: number;
  tokensPerSec: number;
  stepMs: number;
  computeMs: number;
  commMs: number;
  /** The least any rank waited (StepEvent.commExposedMs): the traffic no rank hid; multi-rank runs. */
  commExposedMs?: number;
  optimMs: number;
  /**
   * Rank 0's process CPU time since the previous step's record. The trainer completes a step's
   * record during the next step (trainer.ts), so the last step's interval is only a tail of the
   * step: null there.
   */
  cpuMs: number | null;
  /** Each rank's compute (forward + backward) ms: their spread is what the others wait for. */
  rankComputeMs?: number[];
  /** Windows each rank read (balanced runs). */
  batchSplit?: number[];
}
const steps: StepRecord[] = [];
const tokensPerStep = pg.worldSize * args.batch * model.config.blockSize;
let cpu = process.cpuUsage();
const onEvent = (e: TrainEvent) => {
  if (e.type !== 'step') return;
  const used = process.cpuUsage(cpu);
  cpu = process.cpuUsage();
  // A lockstep rank's trainer counts only its own tokens; every rank runs the same steps.
  const tokensPerSec = lockstep ? e.tokensPerSec * pg.worldSize : e.tokensPerSec;
  steps.push({
    step: e.step,
    tokensPerSec,
    stepMs: (1000 * tokensPerStep) / tokensPerSec,
    computeMs: e.computeMs,
    commMs: e.commMs,
    ...(e.commExposedMs !== undefined ? { commExposedMs: e.commExposedMs } : {}),
    optimMs: e.optimMs,
    cpuMs: e.step === args.steps ? null : (used.user + used.system) / 1000,
    ...(e.ranks ? { rankComputeMs: e.ranks.map((r) => r.computeMs) } : {}),
    ...(e.batchSplit ? { batchSplit: e.batchSplit } : {}),
  });
};

await train({
  model,
  strategy,
  data,
  comm: distributed ? pg : undefined,
  backendName: backend.name,
  config: {
    steps: args.steps,
    batchSize: args.batch,
    blockSize: model.config.blockSize,
    lr: 1e-3,
    warmupSteps: 2,
    seed: args.seed,
    evalInterval: 0,
    evalBatches: 0,
    balanceBatch: args.balance,
  },
  onEvent,
});
if (pg.rank === 0) {
  const buckets = strategy instanceof DDPStrategy ? strategy.buckets.length : 0;
  const params = uniqueParams(model).reduce((n, p) => n + paramCount(p), 0);
  console.log(`RESULT ${JSON.stringify({ worldSize: pg.worldSize, backend: backend.name, params, buckets, steps })}`);
}
await strategy.dispose();
await pg.destroy();
