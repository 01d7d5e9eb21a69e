// The DDP comm hooks of @zeroring/comm on 2 and 3 real processes over real sockets, against their
// math on known inputs (fixtures/comm/hooks-worker.ts does the checks; one spawn per world size):
// bf16 and fp16 average within their precision, as values of their type, with half the bytes of
// float32 on the wire; fp16 divides before the sum so 50 000 does not overflow, and redoes an
// overflowing bucket in float32; PowerSGD at full rank is the exact average and before its start
// step the float32 all-reduce bit for bit; error feedback loses nothing (Σ outputs + residual =
// T · average) and makes the running mean converge. Results are bit-identical on every rank.
// A rank sending bfloat16 where another sends float32 fails the group with CollectiveMismatchError.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { explain, runJob } from './fixtures/comm/spawn.ts';

const worker = fileURLToPath(new URL('./fixtures/comm/hooks-worker.ts', import.meta.url));

describe('comm hooks over real processes', () => {
  // World size 3 takes the ring for every size (small buffers too: some segments are empty).
  for (const [worldSize, env] of [
    [2, {}],
    [3, { ZERORING_SMALL_ALLREDUCE_BYTES: '0' }],
  ] as const) {
    const algo = worldSize === 3 ? ', ring all-reduce only' : '';
    it(`world size ${worldSize}${algo}: bf16, fp16 and PowerSGD against their math`, async () => {
      const rs = await runJob({ worldSize, scenario: 'hooks', worker, env, timeoutMs: 100_000 });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        expect(r.result, why).not.toBeNull();
        expect(r.result!.failures, why).toEqual([]);
      }
      for (const r of rs) expect(r.result!.hashes, why).toEqual(rs[0]!.result!.hashes);
      // Where ranks outnumber the cores, the large 16-bit chunks went through shared memory.
      const shm = worldSize > availableParallelism();
      for (const r of rs)
        expect(r.result!.links).toEqual(shm ? { prev: 'shm', next: 'shm' } : { prev: 'tcp', next: 'tcp' });
      const f = rs[0]!.result!.figures as Record<string, number>;
      // A bucket of 65 537 floats: the ring moves 2(n-1)/n of it per rank, half as many bytes in 16 bits.
      expect(f.bf16Bytes65537).toBe(f.float32Bytes65537 / 2);
      expect(f.bf16Bytes1048583).toBe(f.float32Bytes1048583 / 2);
      expect(f.fp16Bytes65537).toBe(f.float32Bytes65537 / 2);
      expect(f.float32Bytes65537).toBeGreaterThan((65537 * 4 * (worldSize - 1)) / worldSize);
      // Error feedback: the running mean closes in on the average, which without feedback it
      // does not (the identity Σ outputs + residual = T · average is checked in the worker).
      // Bounded residual: the error of the mean falls about as 1/T.
      expect(f.runningMeanErrorAt40).toBeLessThan(f.runningMeanErrorAt5 / 4);
      expect(f.runningMeanErrorAt160).toBeLessThan(f.runningMeanErrorAt40 / 2);
      expect(f.runningMeanErrorNoFeedbackAt160).toBeGreaterThan(0.5);
      expect(f.runningMeanErrorNoFeedbackAt160).toBeGreaterThan(10 * f.runningMeanErrorAt160);
    }, 120_000);
  }

  it('a rank sending bfloat16 where the other sends float32: CollectiveMismatchError on both', async () => {
    const rs = await runJob({ worldSize: 2, scenario: 'mismatch', worker, timeoutMs: 60_000 });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.result, why).not.toBeNull();
      const error = r.result!.error as { name: string; message: string };
      expect(error.name, why).toBe('CollectiveMismatchError');
      expect(error.message).toMatch(/1000 x bfloat16/);
      expect(error.message).toMatch(/1000 x float32/);
    }
  }, 60_000);
});
