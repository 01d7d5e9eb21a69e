// AdamW as plain JavaScript loops over Float32Arrays: the baseline the WASM kernel is measured
// against, the fallback for arrays that do not live in WASM memory, and the bit-exact f32 model
// of the kernel that tests compare it with.
//
// Math: torch 1.13 torch.optim.AdamW (_single_tensor_adamw), per element:
//   p *= 1 - lr*wd                               (decoupled weight decay; skipped where not decayed)
//   m  = b1*m + (1-b1)*g
//   v  = b2*v + (1-b2)*g*g
//   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
// which equals the textbook p -= lr * m̂ / (sqrt(v̂) + eps) with m̂ = m/(1-b1^t), v̂ = v/(1-b2^t).

export interface AdamWHyper {
  lr: number;
  beta1?: number; // default 0.9
  beta2?: number; // default 0.999
  eps?: number; // default 1e-8
  weightDecay?: number; // default 0.01 (torch's AdamW default)
}

/** A run of elements [start, end) that share one decay setting. */
export interface DecayRun {
  start: number;
  end: number;
  decay: boolean;
}

/** The per-step scalars, as f64 (what a JS loop uses) and as the f32 values the kernel uses. */
export interface AdamWScalars {
  decay: number;
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  stepSize: number;
  bc2Sqrt: number;
  eps: number;
}

export class AdamWConfigError extends Error {
  constructor(what: string, value: unknown, expected: string) {
    super(`AdamW: ${what} = ${String(value)}, expected ${expected}`);
    this.name = 'AdamWConfigError';
  }
}

/** Scalars for step t (1-based) in f64; `toF32` rounds each as torch casts Python floats to float. */
export function adamwScalars(h: AdamWHyper, t: number): AdamWScalars {
  const { lr, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0.01 } = h;
  if (!Number.isInteger(t) || t < 1) throw new AdamWConfigError('step', t, 'an integer >= 1 (steps count from 1)');
  if (!(lr >= 0) || !Number.isFinite(lr)) throw new AdamWConfigError('lr', lr, 'a finite number >= 0');
  if (!(beta1 >= 0 && beta1 < 1)) throw new AdamWConfigError('beta1', beta1, 'a number in [0, 1)');
  if (!(beta2 >= 0 && beta2 < 1)) throw new AdamWConfigError('beta2', beta2, 'a number in [0, 1)');
  if (!(eps >= 0) || !Number.isFinite(eps)) throw new AdamWConfigError('eps', eps, 'a finite number >= 0');
  if (!(weightDecay >= 0) || !Number.isFinite(weightDecay))
    throw new AdamWConfigError('weightDecay', weightDecay, 'a finite number >= 0');
  return {
    decay: 1 - lr * weightDecay,
    beta1,
    oneMinusBeta1: 1 - beta1,
    beta2,
    oneMinusBeta2: 1 - beta2,
    stepSize: lr / (1 - beta1 ** t),
    bc2Sqrt: Math.sqrt(1 - beta2 ** t),
    eps,
  };
}

export function toF32(s: AdamWScalars): AdamWScalars {
  const f = Math.fround;
  return {
    decay: f(s.decay),
    beta1: f(s.beta1),
    oneMinusBeta1: f(s.oneMinusBeta1),
    beta2: f(s.beta2),
    oneMinusBeta2: f(s.oneMinusBeta2),
    stepSize: f(s.stepSize),
    bc2Sqrt: f(s.bc2Sqrt),
    eps: f(s.eps),
  };
}

/** Runs covering [0, length): all decayed, the given decayed ranges, or a 0/1 per-element mask. */
export function decayRuns(
  length: number,
  decay: boolean | ReadonlyArray<readonly [number, number]> | Uint8Array = true,
): DecayRun[] {
  if (typeof decay === 'boolean') return length > 0 ? [{ start: 0, end: length, decay }] : [];
  const flags = new Uint8Array(length);
  if (decay instanceof Uint8Array) {
    if (decay.length !== length)
      throw new AdamWConfigError('decay mask length', decay.length, `${length} (one flag per element)`);
    flags.set(decay);
  } else {
    for (const [s, e] of decay) {
      if (!(Number.isInteger(s) && Number.isInteger(e) && 0 <= s && s <= e && e <= length)) {
        throw new AdamWConfigError('decay range', `[${s}, ${e})`, `integers with 0 <= start <= end <= ${length}`);
      }
      flags.fill(1, s, e);
    }
  }
  const runs: DecayRun[] = [];
  for (let i = 0; i < length;) {
    let j = i + 1;
    while (j < length && (flags[j] !== 0) === (flags[i] !== 0)) j++;
    runs.push({ start: i, end: j, decay: flags[i] !== 0 });
    i = j;
  }
  return runs;
}

/**
 * The plain loop a JS programmer would write: f64 arithmetic, f32 storage. Agrees with the f32
 * kernel to within f32 rounding (~1e-7 relative), not bit for bit.
 */
export function adamwStepPlain(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  h: AdamWHyper,
  t: number,
  runs: DecayRun[] = decayRuns(p.length),
): void {
  const s = adamwScalars(h, t);
  const { beta1, oneMinusBeta1, beta2, oneMinusBeta2, stepSize, bc2Sqrt, eps } = s;
  for (const run of runs) {
    const decay = run.decay ? s.decay : 1;
    for (let i = run.start; i < run.end; i++) {
      const gi = g[i];
      const mi = beta1 * m[i] + oneMinusBeta1 * gi;
      const vi = beta2 * v[i] + oneMinusBeta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - (stepSize * mi) / (Math.sqrt(vi) / bc2Sqrt + eps);
    }
  }
}

/**
 * The kernel's f32 arithmetic emulated in JS (Math.fround after every operation; double rounding
 * through f64 is exact for + - * / sqrt). Bit-identical to the WASM kernel; slow; for tests.
 */
export function adamwStepF32(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  h: AdamWHyper,
  t: number,
  runs: DecayRun[] = decayRuns(p.length),
): void {
  const f = Math.fround;
  const s = toF32(adamwScalars(h, t));
  for (const run of runs) {
    const decay = run.decay ? s.decay : 1;
    for (let i = run.start; i < run.end; i++) {
      const gi = g[i];
      const mi = f(f(m[i] * s.beta1) + f(gi * s.oneMinusBeta1));
      const vi = f(f(v[i] * s.beta2) + f(f(s.oneMinusBeta2 * gi) * gi));
      m[i] = mi;
      v[i] = vi;
      const denom = f(f(f(Math.sqrt(vi)) / s.bc2Sqrt) + s.eps);
      p[i] = f(f(p[i] * decay) - f(f(s.stepSize * mi) / denom));
    }
  }
}
