// Seeded pseudo-random numbers: mulberry32 for uniforms, Box–Muller for normals.
//
// Math.random cannot be seeded, and reproducible runs need every rank to draw the same initial
// parameters, data windows and test data from a seed alone. mulberry32 is tiny, fast and good
// enough for initialisation, shuffling and sampling (not for cryptography). The sampler's windows
// (and so checkpoints, resume and the equivalence tests) depend on these exact streams: do not
// change the arithmetic.

/** A seeded uniform [0,1) stream; the seed is used as its low 32 bits, unmixed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** mulberry32 over a mixed seed, with integers, normals and shuffling on top. */
export class Rng {
  /** Uniform float in [0, 1). */
  readonly next: () => number;
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new RangeError(`Rng seed must be a finite number, got ${seed}`);
    // Mix the seed once so that nearby seeds (0, 1, 2...) do not start from nearby states.
    this.next = mulberry32((Math.trunc(seed) ^ 0x9e3779b9) >>> 0);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`Rng.int expects a positive integer bound, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal (mean 0, std 1), Box–Muller; the second value of each pair is kept. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next(); // log(0) would be -Infinity
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: { length: number; [index: number]: T }): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i] as T;
      items[i] = items[j] as T;
      items[j] = tmp;
    }
  }
}

/** Derive an independent seed for a sub-stream (e.g. one per parameter or per epoch). */
export function deriveSeed(seed: number, ...parts: number[]): number {
  let h = (Math.trunc(seed) ^ 0x85ebca6b) >>> 0;
  for (const p of parts) {
    h = Math.imul(h ^ (Math.trunc(p) >>> 0), 0xcc9e2d51) >>> 0;
    h = ((h << 13) | (h >>> 19)) >>> 0;
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}
