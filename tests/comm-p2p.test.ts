// Point to point and subgroups with real processes and sockets: every pair of ranks at world
// sizes 2 to 4 with odd lengths (0, 1, and non-multiples of the chunk), isend/irecv in flight
// both ways at once; two disjoint subgroups running collectives at the same time as each other
// and as the world; the pipeline × data grid; a size mismatch between a send and its recv; a recv
// whose send never comes; and a peer killed inside a subgroup, which must fail every rank of the job.
// Two ranks also stream to each other with recvs posted ahead, as the pipeline executor does.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { explain, runJob, startJob, type WorkerResult } from './fixtures/comm/spawn.ts';

const worker = fileURLToPath(new URL('./fixtures/comm/p2p-worker.ts', import.meta.url));
type ErrInfo = { name: string; message: string; rank?: number; ms: number };

function errOf(r: WorkerResult, key = 'err'): ErrInfo | null {
  return (r.result?.[key] ?? null) as ErrInfo | null;
}

describe('point to point', () => {
  for (const worldSize of [2, 3, 4]) {
    it(`every pair at world size ${worldSize}, odd lengths, isend/irecv both ways`, async () => {
      // Small chunks, so lengths straddle chunk boundaries; 20000 floats also exceed the inline limit.
      const env = { ZERORING_CHUNK_BYTES: '4096', ZERORING_TIMEOUT_MS: '60000' };
      const rs = await runJob({ worldSize, scenario: 'pairs', worker, env });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        expect(r.result?.failures, why).toEqual([]);
        expect(r.result?.checks, why).toBe(9 * (worldSize - 1));
      }
    }, 240_000);
  }

  it('two ranks streaming to each other with recvs posted ahead: every message arrives whole', async () => {
    const rs = await runJob({ worldSize: 2, scenario: 'stream', worker, env: { ZERORING_TIMEOUT_MS: '60000' } });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      expect(r.result?.failures, why).toEqual([]);
      expect(r.result?.checks, why).toBe(60);
    }
  }, 120_000);

  it('a recv whose length differs from the send: CollectiveMismatchError on both sides', async () => {
    const rs = await runJob({ worldSize: 2, scenario: 'mismatch', worker, env: { ZERORING_TIMEOUT_MS: '60000' } });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      const e = errOf(r)!;
      expect(e?.name, why).toBe('CollectiveMismatchError');
      expect(e.message, why).toContain('send #0 (10 x float32)');
      expect(e.message, why).toContain('recv #0 (11 x float32)');
      expect(errOf(r, 'later')?.name, why).toBe('CollectiveMismatchError');
    }
  }, 240_000);

  it('a recv whose send never comes: CommTimeoutError naming it, and the job fails on the other rank', async () => {
    const rs = await runJob({ worldSize: 2, scenario: 'unmatched', worker, env: { ZERORING_TIMEOUT_MS: '1500' } });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      expect(errOf(r)?.name, why).toBe('CommTimeoutError');
    }
    expect(errOf(rs[1]!)!.message, why).toContain('recv #0 (5 x float32) from rank 0 made no progress');
  }, 240_000);
});

describe('subgroups', () => {
  it('disjoint subgroups {0,2} and {1,3} at once beside the world, and the pp=2 grid', async () => {
    const rs = await runJob({ worldSize: 4, scenario: 'subgroups', worker, env: { ZERORING_CHUNK_BYTES: '4096' } });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      expect(r.result?.failures, why).toEqual([]);
      expect(r.result?.notMine, why).toBeNull();
    }
    expect(rs.map((r) => r.result?.mine)).toEqual([
      { rank: 0, size: 2, ranks: [0, 2] },
      { rank: 1, size: 2, ranks: [3, 1] },
      { rank: 1, size: 2, ranks: [0, 2] },
      { rank: 0, size: 2, ranks: [3, 1] },
    ]);
    expect(rs.map((r) => r.result?.grid)).toEqual([
      { stage: 0, pipelineIndex: 0, data: [0, 2], pipe: [0, 1] },
      { stage: 1, pipelineIndex: 0, data: [1, 3], pipe: [0, 1] },
      { stage: 0, pipelineIndex: 1, data: [0, 2], pipe: [2, 3] },
      { stage: 1, pipelineIndex: 1, data: [1, 3], pipe: [2, 3] },
    ]);
  }, 240_000);

  it('a peer killed in subgroup {1,3}: every rank of the job fails with PeerLostError, nothing hangs', async () => {
    const job = await startJob({
      worldSize: 4,
      scenario: 'kill-subgroup',
      worker,
      env: { ZERORING_TIMEOUT_MS: '60000' },
    });
    try {
      const rs = await job.done;
      const why = explain(rs);
      expect(rs[3]!.signal, why).toBe('SIGKILL');
      for (const r of rs.slice(0, 3)) {
        expect(r.code, why).toBe(0);
        const e = errOf(r)!;
        expect(e?.name, why).toBe('PeerLostError');
        // Noticed from closed sockets, long before the 60 s timeout.
        expect(e.ms, why).toBeLessThan(30_000);
      }
    } finally {
      job.kill();
    }
  }, 240_000);
});
