// One stage of the pipeline benchmark (benchmarks/pipeline/main.ts starts P of them): the GPT
// preset cut into P stages by parameter count, steps of M micro-batches run with runStageStep in
// GPipe and 1F1B order, alternating, and a send/recv ping-pong of one activation between stages 0
// and 1. Rank 0 prints `RESULT {json}` with every stage's per-step figures.
import { initBackend, tf } from '@zeroring/backend';
import { initProcessGroup } from '@zeroring/comm';
import { CharTokenizer, TextDataset, createGPT, gptConfig, loadCorpus, type PresetName } from '@zeroring/gpt';
import {
  cutStages,
  gpipeSchedule,
  oneFOneBSchedule,
  PipelineStage,
  runStageStep,
  stageModel,
  uniqueParams,
  type NamedTensors,
} from '@zeroring/train';

interface Args {
  model: PresetName;
  micro: number;
  batch: number;
  steps: number;
  pings: number;
}
const args = JSON.parse(process.argv[2] ?? '{}') as Args;
await initBackend('wasm');
const pg = await initProcessGroup();
const s = pg.rank;
const P = pg.worldSize;
const text = loadCorpus().slice(0, 200_000);
const tokenizer = CharTokenizer.fromText(text);
const cfg = gptConfig(args.model, tokenizer.vocabSize);
const model = createGPT(cfg);
const T = cfg.blockSize;
const cut = cutStages(model.blocks, P)[s]!;
const part = stageModel(model, cut.first, cut.end);
const values = part.initParams(1);
const tensors = new Map(uniqueParams(part).map((p) => [p.name, tf.tensor(values.get(p.name)!, p.shape)]));
const source = {
  acquire: (block: number): NamedTensors =>
    Object.fromEntries(part.blocks[block]!.params.map((p) => [p.name, tensors.get(p.name)!])),
  release: () => {},
};
// Gradients are not the point here: freed as they come.
const sink = { onBlockGrads: (_b: number, g: NamedTensors) => void tf.dispose(Object.values(g)) };
const data = new TextDataset(tokenizer.encode(text), { seed: 1 });
const starts = data.windowStarts('train', T);
const batches = Array.from({ length: args.micro }, (_, m) => {
  const b = data.batchAt(
    Array.from({ length: args.batch }, (_, j) => starts[(m * args.batch + j) * 97]!),
    T,
  );
  const shape = [args.batch, T];
  return { input: tf.tensor(b.input, shape, 'int32'), targets: tf.tensor(b.targets, shape, 'int32') };
});

const steps: Array<{ schedule: string; stepMs: number; recvWaitMs: number; peakLive: number }> = [];
for (let k = 0; k < 2 * args.steps + 2; k++) {
  const schedule = k % 2 === 0 ? 'gpipe' : '1f1b';
  const stage = new PipelineStage(model, cut.first, cut.end, source, sink, { gradScale: 1 / args.micro });
  await pg.barrier();
  const t0 = performance.now();
  const r = await runStageStep({
    stage,
    program: (schedule === 'gpipe' ? gpipeSchedule : oneFOneBSchedule)(P, args.micro)[s]!,
    comm: pg,
    prev: s > 0 ? s - 1 : undefined,
    next: s < P - 1 ? s + 1 : undefined,
    activationShape: [args.batch, T, cfg.nEmbd],
    micro: (m) => batches[m]!,
  });
  const stepMs = performance.now() - t0;
  tf.dispose(r.losses.map((l) => l.value));
  // The first step of each schedule compiles and warms up: left out.
  if (k >= 2) steps.push({ schedule, stepMs, recvWaitMs: r.recvWaitMs, peakLive: r.peakLive });
}

// One micro-batch's activation there and back between stages 0 and 1, over the pipeline's send/recv.
const buf = new Float32Array(args.batch * T * cfg.nEmbd);
const pings: number[] = [];
for (let i = 0; i < args.pings && P > 1; i++) {
  const t0 = performance.now();
  if (s === 0) {
    await pg.send(buf, 1);
    await pg.recv(buf, 1);
    pings.push((performance.now() - t0) / 2);
  } else if (s === 1) {
    await pg.recv(buf, 0);
    await pg.send(buf, 0);
  }
}
// Every stage's figures to rank 0, as a flat array: [stepMs, recvWaitMs, peakLive] per step.
const mine = Float32Array.from(steps.flatMap((x) => [x.stepMs, x.recvWaitMs, x.peakLive]));
const all = new Float32Array(mine.length * P);
await pg.allGather(mine, all);
if (s === 0) {
  const perStage = Array.from({ length: P }, (_, st) =>
    steps.map((x, i) => ({
      schedule: x.schedule,
      stepMs: all[st * mine.length + 3 * i]!,
      recvWaitMs: all[st * mine.length + 3 * i + 1]!,
      peakLive: all[st * mine.length + 3 * i + 2]!,
    })),
  );
  const cuts = cutStages(model.blocks, P).map((c) => ({ first: c.first, end: c.end, params: c.params }));
  process.stdout.write(`RESULT ${JSON.stringify({ perStage, pings, activationFloats: buf.length, cuts })}\n`);
}
await pg.destroy();
