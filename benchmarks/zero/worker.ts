// One rank of the ZeRO benchmarks (memory.ts and step-time.ts beside it start N of
// these through launch()). It runs the trainer behind `zeroring train` — GPT preset on Moby Dick,
// no evaluation, checkpoints or sampling — once per configuration, one after the other in the
// same processes (so configurations compared side by side share the machine's load), and rank 0
// prints one `RESULT {json}` line per configuration: every step's time, the trainer's
// memory.modelStateBytes (largest per-rank model state), rank 0's per-category peaks by place,
// and the ZeRO-3 gather statistics.
import { initBackend, type BackendKind } from '@zeroring/backend';
import { initProcessGroup } from '@zeroring/comm';
import { CharTokenizer, TextDataset, createGPT, gptConfig, loadCorpus, type PresetName } from '@zeroring/gpt';
import {
  DDPStrategy,
  ShardedStrategy,
  createZeroStrategy,
  paramCount,
  train,
  uniqueParams,
  type Strategy,
  type TrainEvent,
} from '@zeroring/train';

export interface ZeroBenchConfig {
  strategy: 'ddp' | 'zero1' | 'zero2' | 'zero3';
  offload: boolean;
  /** Steps of this configuration (default: the job's). */
  runSteps?: number;
}

interface Args {
  model: PresetName;
  batch: number;
  steps: number;
  backend: BackendKind;
  seed: number;
  configs: ZeroBenchConfig[];
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const quiet = { info() {}, warn() {}, debug() {} };
const backend = await initBackend(args.backend, { logger: quiet });
const pg = await initProcessGroup();
const text = loadCorpus();
const tokenizer = CharTokenizer.fromText(text);
const data = new TextDataset(tokenizer.encode(text), { seed: args.seed });
const model = createGPT(gptConfig(args.model, tokenizer.vocabSize));
const tokensPerStep = pg.worldSize * args.batch * model.config.blockSize;

for (const c of args.configs) {
  const strategy: Strategy =
    c.strategy === 'ddp' ? new DDPStrategy(pg) : createZeroStrategy(c.strategy, pg, { offload: c.offload });
  const steps: Array<{ stepMs: number; computeMs: number; commMs: number; optimMs: number; cpuMs: number }> = [];
  // Rank 0's process CPU time per step: the work a step costs, which a loaded machine's
  // contention does not inflate the way it inflates wall time.
  let cpu = process.cpuUsage();
  const onEvent = (e: TrainEvent) => {
    if (e.type !== 'step') return;
    const used = process.cpuUsage(cpu);
    cpu = process.cpuUsage();
    steps.push({
      stepMs: (1000 * tokensPerStep) / e.tokensPerSec,
      computeMs: e.computeMs,
      commMs: e.commMs,
      optimMs: e.optimMs,
      cpuMs: (used.user + used.system) / 1000,
    });
  };
  const summary = await train({
    model,
    strategy,
    data,
    comm: pg,
    backendName: backend.name,
    config: {
      steps: c.runSteps ?? args.steps,
      batchSize: args.batch,
      blockSize: model.config.blockSize,
      lr: 1e-3,
      warmupSteps: 1,
      seed: args.seed,
      evalInterval: 0,
      evalBatches: 0,
    },
    onEvent,
  });
  if (pg.rank === 0) {
    const sharded = strategy instanceof ShardedStrategy ? strategy : undefined;
    console.log(
      `RESULT ${JSON.stringify({
        ...c,
        worldSize: pg.worldSize,
        backend: backend.name,
        params: uniqueParams(model).reduce((n, p) => n + paramCount(p), 0),
        shardLength: sharded?.partition.shardLength,
        modelStateBytes: summary.memory.modelStateBytes,
        peak: summary.memory.peak,
        gather: sharded?.gatherStats,
        steps,
      })}`,
    );
  }
  await strategy.dispose();
}
await pg.destroy();
