// bring-your-own-model: DistributedDataParallel around a model that is not the GPT.
//
//   pnpm exec zeroring launch --nproc-per-node 2 examples/bring-your-own-model/train.ts
//
// The model is a small MLP that learns a fixed random "teacher" function on synthetic data.
// To train with zeroring a model only has to be a list of blocks, each a pure function of
// (named parameters, input), plus a mean loss and a seeded initialiser: the strategy owns the
// parameters and hands each block its tensors when it runs. Everything distributed is in the
// five lines marked DDP below; the rest is what one process would do anyway.
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { initBackend, tf, type BackendKind } from '@zeroring/backend';
import { initProcessGroup } from '@zeroring/comm';
import {
  DistributedDataParallel,
  DistributedSampler,
  mulberry32 as rng,
  type Block,
  type BlockModel,
} from '@zeroring/train';

const { values: flags } = parseArgs({
  options: {
    steps: { type: 'string', default: '300' },
    'batch-size': { type: 'string', default: '64' }, // per rank, per micro-batch
    accum: { type: 'string', default: '1' }, // micro-batches per step (accumulated with noSync)
    lr: { type: 'string', default: '1e-2' },
    backend: { type: 'string', default: 'auto' },
    out: { type: 'string' }, // rank 0 writes a JSON summary here
  },
});
const steps = Number(flags.steps);
const batch = Number(flags['batch-size']);
const accum = Number(flags.accum);
const lr = Number(flags.lr);

// ---- the model: blocks in, hidden, out ------------------------------------------------------
const D = 16; // input features
const H = 64; // hidden width

function mlp(): BlockModel {
  const dense = (name: string, x: tf.Tensor, p: Record<string, tf.Tensor>) =>
    tf.add(tf.matMul(x as tf.Tensor2D, p[`${name}.w`] as tf.Tensor2D), p[`${name}.b`]);
  const blocks: Block[] = [
    {
      name: 'in',
      params: [
        { name: 'in.w', shape: [D, H] },
        { name: 'in.b', shape: [H] },
      ],
      forward: (p, x) => tf.relu(dense('in', x, p)),
    },
    // A residual hidden layer: x + relu(x W + b).
    {
      name: 'hidden',
      params: [
        { name: 'hidden.w', shape: [H, H] },
        { name: 'hidden.b', shape: [H] },
      ],
      forward: (p, x) => tf.add(x, tf.relu(dense('hidden', x, p))),
    },
    {
      name: 'out',
      params: [
        { name: 'out.w', shape: [H, 1] },
        { name: 'out.b', shape: [1] },
      ],
      forward: (p, x) => dense('out', x, p),
    },
  ];
  return {
    blocks,
    loss: (pred, target) => tf.losses.meanSquaredError(target, pred) as tf.Scalar,
    initParams(seed) {
      const rand = rng(seed);
      const out = new Map<string, Float32Array>();
      for (const b of blocks) {
        for (const p of b.params) {
          const n = p.shape.reduce((a, c) => a * c, 1);
          // He-style uniform init for weights, zero biases.
          const limit = p.shape.length === 2 ? Math.sqrt(6 / p.shape[0]) : 0;
          out.set(
            p.name,
            Float32Array.from({ length: n }, () => (2 * rand() - 1) * limit),
          );
        }
      }
      return out;
    },
  };
}

// ---- synthetic data: y = sin(x·u) + 0.5 cos(x·v), the same rows on every rank ------------------
function dataset(n: number, seed: number): { x: Float32Array; y: Float32Array } {
  const r = rng(seed);
  const teacher = rng(42);
  const u = Float32Array.from({ length: D }, () => teacher() - 0.5);
  const v = Float32Array.from({ length: D }, () => teacher() - 0.5);
  const x = new Float32Array(n * D);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let xu = 0;
    let xv = 0;
    for (let j = 0; j < D; j++) {
      const xi = 2 * r() - 1;
      x[i * D + j] = xi;
      xu += xi * u[j];
      xv += xi * v[j];
    }
    y[i] = Math.sin(3 * xu) + 0.5 * Math.cos(3 * xv);
  }
  return { x, y };
}

function rows(data: { x: Float32Array; y: Float32Array }, idx: ArrayLike<number>) {
  const x = new Float32Array(idx.length * D);
  const y = new Float32Array(idx.length);
  for (let k = 0; k < idx.length; k++) {
    x.set(data.x.subarray(idx[k] * D, (idx[k] + 1) * D), k * D);
    y[k] = data.y[idx[k]];
  }
  return { x: tf.tensor2d(x, [idx.length, D]), y: tf.tensor2d(y, [idx.length, 1]) };
}

// ---- training -----------------------------------------------------------------------------------
await initBackend(flags.backend as BackendKind);
const pg = await initProcessGroup(); // DDP: join the job (RANK, WORLD_SIZE, MASTER_ADDR, ... from the launcher)
const model = mlp();
const ddp = await DistributedDataParallel.create(model, pg, { seed: 0, adamw: { weightDecay: 0 } }); // DDP: rank 0's weights everywhere
const train = dataset(8192, 1);
const val = dataset(1024, 2);
// DDP: each rank reads its own disjoint rows, reshuffled every epoch.
const sampler = new DistributedSampler({
  numWindows: 8192,
  batchSize: batch * accum,
  rank: pg.rank,
  worldSize: pg.worldSize,
  seed: 3,
});
const say = (msg: string) => pg.rank === 0 && console.log(msg);
say(`training an MLP (${D}→${H}→${H}→1) on ${pg.worldSize} rank(s), batch ${batch}×${accum} per rank`);

const t0 = performance.now();
let lastLoss = NaN;
for (let step = 0; step < steps; step++) {
  const idx = sampler.indices(step);
  let loss = 0;
  for (let j = 0; j < accum; j++) {
    const { x, y } = rows(train, idx.subarray(j * batch, (j + 1) * batch));
    // DDP: all but the last micro-batch accumulate without communication.
    loss += j < accum - 1 ? await ddp.noSync(() => ddp.forwardBackward(x, y)) : await ddp.forwardBackward(x, y);
    tf.dispose([x, y]);
  }
  const cosine = 0.5 * (1 + Math.cos((Math.PI * step) / steps));
  await ddp.step({ lr: lr * (0.1 + 0.9 * cosine), gradScale: 1 / accum, maxGradNorm: 1 });
  const mean = Float32Array.of(loss / accum);
  await pg.allReduce(mean, { op: 'avg' });
  lastLoss = mean[0];
  if (step === 0 || (step + 1) % 25 === 0) say(`step ${step + 1}/${steps}  train mse ${lastLoss.toFixed(4)}`);
}
const seconds = (performance.now() - t0) / 1000;

// Validation on rank 0's copy, and proof that every rank holds the same weights.
const vx = tf.tensor2d(val.x, [1024, D]);
const vy = tf.tensor2d(val.y, [1024, 1]);
const valMse = await ddp.evalLoss(vx, vy);
const variance = (() => {
  const m = val.y.reduce((a, b) => a + b, 0) / val.y.length;
  return val.y.reduce((a, b) => a + (b - m) ** 2, 0) / val.y.length;
})();
tf.dispose([vx, vy]);
let sumSq = 0;
for (const a of (await ddp.parameters()).values()) for (const v of a) sumSq += v * v;
const lo = Float32Array.of(sumSq);
const hi = Float32Array.of(sumSq);
await pg.allReduce(lo, { op: 'min' });
await pg.allReduce(hi, { op: 'max' });
const identical = lo[0] === hi[0];
say(
  `done in ${seconds.toFixed(1)} s: train mse ${lastLoss.toFixed(4)}, validation mse ${valMse.toFixed(4)} (predicting the mean: ${variance.toFixed(4)}); ranks identical: ${identical}`,
);
if (pg.rank === 0 && flags.out)
  writeFileSync(
    flags.out,
    JSON.stringify({ worldSize: pg.worldSize, steps, finalTrainMse: lastLoss, valMse, variance, identical, seconds }),
  );

await ddp.dispose();
await pg.destroy();
