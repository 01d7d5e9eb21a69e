// mulberry32: the one seeded uniform [0,1) stream for train, its tests, examples and benchmarks.
//
// Math.random cannot be seeded; the sampler, test fixtures and benchmarks need the same numbers on
// every rank and every run from a seed alone. mulberry32 is tiny and good enough for shuffling and
// test data (not for cryptography). The sampler's windows (and so checkpoints, resume and the
// equivalence tests) depend on this exact stream: do not change the arithmetic.
//
// Why here and not @zeroring/gpt's Rng: the layering (cli → train/gpt → backend/comm) lets gpt
// and train not import each other, and comm imports nothing of ours. gpt's Rng (packages/gpt/src/
// rng.ts) uses the same step but mixes the seed first and adds normals, so it stays in gpt. This
// file imports nothing, so comm benchmarks may take it by path without pulling in tfjs.

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
