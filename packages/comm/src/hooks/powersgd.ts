// PowerSGD (Vogels et al., 2019) as torch's powerSGD_hook: each matrix-shaped gradient M in a
// bucket (rows = shape[0], the rest flattened) is replaced by a rank-r approximation P Qᵀ found by
// one step of power iteration per training step, so a rows x cols matrix costs (rows + cols) r
// floats on the wire instead of rows x cols:
//   P = M Q, all-reduced (sum), orthonormalised;  Q = Mᵀ P, all-reduced (average);  M ≈ P Qᵀ.
// Vectors and matrices too small to gain (torch's min_compression_rate) go in one float32
// average all-reduce. Error feedback adds to each step's gradient what compression dropped from
// this rank's input at the previous step, so nothing is lost, only delayed. Warm start keeps
// each bucket's Q from the step before, so the power iteration goes on converging across steps
// instead of starting from noise. Before `startStep` the hook is the plain average.
// Every rank ends a step with the same values: P and Q are all-reduced, everything after them is
// a deterministic function of what all ranks share.
// Details: docs/internals.md#powersgd
import { deriveSeed, Rng } from '@zeroring/core';
import { ConfigError } from '../errors.ts';
import { allReduceHook } from './allreduce.ts';
import {
  expand,
  multiply,
  multiplyTransposed,
  orthogonalize,
  planCompression,
  type CompressionPlan,
  type LowRankSlot,
} from './lowrank.ts';
import type { CommHook, GradBucket, HookGroup } from './types.ts';

export interface PowerSGDOptions {
  /** torch's matrix_approximation_rank: columns of P and Q (at most a matrix's rows and columns). Default 4. */
  rank?: number;
  /** torch's start_powerSGD_iter: the plain float32 average for steps before this one. Default 10. */
  startStep?: number;
  /** torch's min_compression_rate: compress a matrix only when (rows + cols) r times this < rows x cols. Default 2. */
  minCompressionRate?: number;
  /** torch's use_error_feedback. Default true. */
  errorFeedback?: boolean;
  /** torch's warm_start: reuse each bucket's Q from the step before. Default true. */
  warmStart?: boolean;
  /** torch's orthogonalization_epsilon, added to each column's norm. Default 0. */
  orthogonalizationEpsilon?: number;
  /** Seed of the random Q a bucket starts from; the same on every rank. Default 0. */
  seed?: number;
}

export const POWERSGD_DEFAULTS: Required<PowerSGDOptions> = {
  rank: 4,
  startStep: 10,
  minCompressionRate: 2,
  errorFeedback: true,
  warmStart: true,
  orthogonalizationEpsilon: 0,
  seed: 0,
};

interface BucketState {
  /** The bucket's parameters as names and shapes: a different layout starts the bucket afresh. */
  key: string;
  plan: CompressionPlan;
  p: Float32Array;
  /** The previous step's Q (warm start); null until the first compressed step. */
  q: Float32Array | null;
  /** What compression left out of this rank's input last step (error feedback). */
  error: Float32Array | null;
}

/** torch's PowerSGDState: the options and what the hook keeps per bucket across steps. */
export class PowerSGDState {
  readonly options: Readonly<Required<PowerSGDOptions>>;
  /** Elements of the buckets' gradients before and after compression, summed over compressed steps. */
  readonly stats = { before: 0, after: 0 };
  private readonly buckets = new Map<number, BucketState>();

  constructor(opts: PowerSGDOptions = {}) {
    const o = { ...POWERSGD_DEFAULTS, ...opts };
    checkInt('rank', o.rank, 1);
    checkInt('startStep', o.startStep, 0);
    checkInt('seed', o.seed, 0);
    for (const k of ['minCompressionRate', 'orthogonalizationEpsilon'] as const) {
      if (!Number.isFinite(o[k]) || o[k] < 0)
        throw new ConfigError(`PowerSGD ${k} ${o[k]} is invalid, expected a number >= 0`);
    }
    this.options = o;
  }

  /** This rank's error feedback for a bucket (what the last step's compression left out), if any. */
  errorOf(bucket: number): Float32Array | null {
    return this.buckets.get(bucket)?.error ?? null;
  }

  /** The bucket's state for this layout, made afresh when the layout is new. */
  bucketState(bucket: GradBucket): BucketState {
    const key = bucket.params.map((p) => `${p.name}:${p.shape.join('x')}@${p.offset}`).join(',');
    let st = this.buckets.get(bucket.index);
    if (!st || st.key !== key) {
      const plan = planCompression(bucket.params, this.options.rank, this.options.minCompressionRate);
      st = { key, plan, p: new Float32Array(plan.pSize), q: null, error: null };
      this.buckets.set(bucket.index, st);
    }
    return st;
  }
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min)
    throw new ConfigError(`PowerSGD ${name} ${v} is invalid, expected an integer >= ${min}`);
}

/** torch's powerSGD_hook(state, bucket) as a CommHook over `state`. */
export function powerSGDHook(state: PowerSGDState): CommHook {
  return async (bucket, group) => {
    if (bucket.step < state.options.startStep) return allReduceHook(bucket, group);
    return compressedAverage(state, bucket, group);
  };
}

async function compressedAverage(state: PowerSGDState, bucket: GradBucket, group: HookGroup): Promise<Float32Array> {
  const o = state.options;
  const st = state.bucketState(bucket);
  const { plan } = st;
  const buf = bucket.buffer;
  let input: Float32Array | null = null;
  if (o.errorFeedback) {
    if (st.error) for (let i = 0; i < buf.length; i++) buf[i]! += st.error[i]!;
    input = buf.slice();
  }
  state.stats.before += buf.length;
  state.stats.after += plan.uncompressedSize + plan.pSize + plan.qSize;

  // The plain part first, on the wire while P is computed.
  const flat = gather(buf, plan);
  const flatDone = flat.length > 0 ? group.allReduce(flat, { op: 'avg' }) : Promise.resolve();

  const q = startQ(st, bucket, o);
  for (const s of plan.compressed) {
    const qs = q.subarray(s.qOffset, s.qOffset + s.cols * s.rank);
    orthogonalize(qs, s.cols, s.rank, o.orthogonalizationEpsilon);
    multiply(matrixOf(buf, s), qs, pOf(st.p, s), s.rows, s.cols, s.rank);
  }
  // No need to average P: it is orthonormalised next.
  const pDone = plan.pSize > 0 ? group.allReduce(st.p, { op: 'sum' }) : Promise.resolve();
  await flatDone;
  await pDone;
  for (const s of plan.compressed) {
    const ps = pOf(st.p, s);
    orthogonalize(ps, s.rows, s.rank, o.orthogonalizationEpsilon);
    multiplyTransposed(
      matrixOf(buf, s),
      ps,
      q.subarray(s.qOffset, s.qOffset + s.cols * s.rank),
      s.rows,
      s.cols,
      s.rank,
    );
  }
  if (plan.qSize > 0) await group.allReduce(q, { op: 'avg' });
  for (const s of plan.compressed) {
    expand(pOf(st.p, s), q.subarray(s.qOffset, s.qOffset + s.cols * s.rank), matrixOf(buf, s), s.rows, s.cols, s.rank);
  }
  scatter(flat, buf, plan);
  remember(st, buf, input, q, o.warmStart);
  return buf;
}

/** This step's starting Q: last step's (warm start) or seeded normals, the same on every rank. */
function startQ(st: BucketState, bucket: GradBucket, o: Required<PowerSGDOptions>): Float32Array {
  if (st.q && o.warmStart) return st.q;
  const rng = new Rng(deriveSeed(o.seed, bucket.index, bucket.step));
  const q = new Float32Array(st.plan.qSize);
  for (let i = 0; i < q.length; i++) q[i] = rng.normal();
  return q;
}

/**
 * Keeps Q and the error for the next step. A non-finite result (a non-finite gradient on some
 * rank) is the same on every rank: each then drops the bucket's Q and error alike, rather than
 * carry NaN into every later step.
 */
function remember(
  st: BucketState,
  out: Float32Array,
  input: Float32Array | null,
  q: Float32Array,
  warm: boolean,
): void {
  let finite = true;
  for (let i = 0; i < out.length && finite; i++) finite = Number.isFinite(out[i]);
  if (!finite) {
    st.q = null;
    st.error = null;
    return;
  }
  st.q = warm ? q : null;
  if (!input) return;
  // What this rank's input lost: its own input minus the average it gets back (torch keeps the
  // same local error; over the ranks these sum to exactly what compression left out).
  for (let i = 0; i < input.length; i++) input[i]! -= out[i]!;
  st.error = input;
}

function matrixOf(buf: Float32Array, s: LowRankSlot): Float32Array {
  return buf.subarray(s.param.offset, s.param.offset + s.param.size);
}

function pOf(p: Float32Array, s: LowRankSlot): Float32Array {
  return p.subarray(s.pOffset, s.pOffset + s.rows * s.rank);
}

function gather(buf: Float32Array, plan: CompressionPlan): Float32Array {
  const out = new Float32Array(plan.uncompressedSize);
  let at = 0;
  for (const p of plan.uncompressed) {
    out.set(buf.subarray(p.offset, p.offset + p.size), at);
    at += p.size;
  }
  return out;
}

function scatter(flat: Float32Array, buf: Float32Array, plan: CompressionPlan): void {
  let at = 0;
  for (const p of plan.uncompressed) {
    buf.set(flat.subarray(at, at + p.size), p.offset);
    at += p.size;
  }
}
