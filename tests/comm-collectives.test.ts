// Every collective and reduce op on 1-4 real processes over real sockets, on random data and
// awkward lengths (0, 1, primes, not divisible by the world size), checked against a local
// reference; results must be bit-identical on every rank. One spawn per world size runs all
// the checks (see fixtures/comm/worker.ts), issued without awaiting to exercise ordering.
import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { explain, runJob } from './fixtures/comm/spawn.ts';

describe('collectives over real processes', () => {
  // small: all-reduces up to this size take the gather algorithm (default: by world size;
  // 0: the ring for every size, so small buffers also exercise the ring's chunking; 1 MiB: the
  // gather also for buffers sent by reference).
  for (const [worldSize, chunkBytes, small] of [
    [1, 1 << 20, undefined],
    [2, 1 << 20, undefined],
    [2, 4096, 0],
    [3, 8192, 1 << 20],
    [4, 1 << 20, undefined],
  ] as const) {
    const algo =
      small === undefined ? '' : small === 0 ? ', ring all-reduce only' : `, gather all-reduce up to ${small} B`;
    it(`world size ${worldSize}, chunk ${chunkBytes} B${algo}: all five collectives and barrier`, async () => {
      const rs = await runJob({
        worldSize,
        scenario: 'collectives',
        env: {
          ZERORING_CHUNK_BYTES: String(chunkBytes),
          ...(small === undefined ? {} : { ZERORING_SMALL_ALLREDUCE_BYTES: String(small) }),
          // One large prime length where chunks are big; 4 ranks on 2 loaded cores get fewer.
          ...(worldSize === 2 && chunkBytes > 4096
            ? { CHECK_LENGTHS: '0,1,2,3,5,7,13,97,1009,4099,65537,262147' }
            : {}),
          ...(worldSize === 4 ? { CHECK_LENGTHS: '0,1,3,5,7,97,1009,65537' } : {}),
        },
      });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        expect(r.result, why).not.toBeNull();
        expect(r.result!.failures, why).toEqual([]);
        expect(r.result!.checks as number).toBeGreaterThan(50);
      }
      // Same bits everywhere (DDP relies on it).
      for (const r of rs) expect(r.result!.hashes).toEqual(rs[0]!.result!.hashes);
      // Ranks on one machine pass large payloads through shared memory where they outnumber the
      // cores (and chunks can be large).
      const shm = worldSize > availableParallelism() && chunkBytes > 64 * 1024;
      const expected = worldSize === 1 ? null : shm ? { prev: 'shm', next: 'shm' } : { prev: 'tcp', next: 'tcp' };
      for (const r of rs) expect(r.result!.links, why).toEqual(expected);
    }, 240_000);
  }
});

// The same checks over each kind of link, and where the two meet (ZERORING_SHM set on every
// rank, whatever the machine's default). Chunks of 128 KiB make every
// large collective use more chunks than a link has shared-memory slots (8), so senders wait
// for the receiver's credits; lengths up to 2^20 + 7 floats cut into many such chunks.
describe('collectives over shared memory, TCP and both', () => {
  const lengths = '0,1,5,97,16411,65537,262147,1048583';
  for (const [worldSize, shmOffOnRanks] of [
    [2, [0, 1]],
    [3, [1]],
    [4, []],
  ] as const) {
    const what =
      shmOffOnRanks.length === worldSize
        ? 'TCP only (ZERORING_SHM=0)'
        : shmOffOnRanks.length
          ? `ZERORING_SHM=0 on rank ${shmOffOnRanks.join(', ')}: its links on TCP, the others in shared memory`
          : 'shared memory (ZERORING_SHM=1), senders waiting for slots';
    it(`world size ${worldSize}, chunk 128 KiB, ${what}`, async () => {
      const off = new Set<number>(shmOffOnRanks);
      const rs = await runJob({
        worldSize,
        scenario: 'collectives',
        env: { ZERORING_CHUNK_BYTES: String(128 * 1024), ZERORING_SMALL_ALLREDUCE_BYTES: '0', CHECK_LENGTHS: lengths },
        rankEnv: (rank) => ({ ZERORING_SHM: off.has(rank) ? '0' : '1' }),
      });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        expect(r.result!.failures, why).toEqual([]);
        const prev = (r.rank - 1 + worldSize) % worldSize;
        const next = (r.rank + 1) % worldSize;
        const kind = (a: number, b: number) => (off.has(a) || off.has(b) ? 'tcp' : 'shm');
        expect(r.result!.links, why).toEqual({ prev: kind(prev, r.rank), next: kind(r.rank, next) });
      }
      for (const r of rs) expect(r.result!.hashes).toEqual(rs[0]!.result!.hashes);
    }, 240_000);
  }
});
