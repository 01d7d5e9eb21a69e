// Failure behaviour with real processes: a killed peer, mismatched calls, a timeout, a
// stopped (silent) peer, two workers claiming one rank, and a stranger without the token
// knocking on the store and the ring while the job runs. Every rank must get the typed
// error, nothing may hang, and the stranger must change nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { explain, runJob, startJob, type WorkerResult } from './fixtures/comm/spawn.ts';

type ErrInfo = { name: string; message: string; rank?: number; ms?: number };

function errOf(r: WorkerResult, key = 'err'): ErrInfo {
  return (r.result?.[key] ?? { name: 'no result', message: '' }) as ErrInfo;
}

describe('failures reach every rank', () => {
  it('a peer killed mid-collective: every other rank gets PeerLostError naming it, pending and later', async () => {
    const job = await startJob({ worldSize: 3, scenario: 'kill', env: { ZERORING_TIMEOUT_MS: '60000' } });
    try {
      const rs = await job.done;
      const why = explain(rs);
      expect(rs[2]!.signal, why).toBe('SIGKILL');
      for (const r of rs.slice(0, 2)) {
        expect(r.code, why).toBe(0);
        const errors = r.result!.errors as ErrInfo[];
        expect(
          errors.map((e) => e.name),
          why,
        ).toEqual(['PeerLostError', 'PeerLostError']);
        expect(errors[0]!.rank, why).toBe(2);
        // Noticed from the closed socket, long before the 60 s timeout.
        expect(errors[0]!.ms!, why).toBeLessThan(30_000);
        expect((r.result!.later as ErrInfo).name, why).toBe('PeerLostError');
      }
    } finally {
      job.kill();
    }
  }, 240_000);

  for (const kind of ['size', 'op', 'kind'] as const) {
    it(`mismatched calls (${kind}): CollectiveMismatchError on all ranks, naming both sides`, async () => {
      const rs = await runJob({
        worldSize: 3,
        scenario: 'mismatch',
        env: { MISMATCH: kind, ZERORING_TIMEOUT_MS: '60000' },
      });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        const e = errOf(r);
        expect(e.name, why).toBe('CollectiveMismatchError');
        expect(e.message).toContain('allReduce #1 (10 x float32 op=sum)');
        const other = {
          size: 'allReduce #1 (11 x float32 op=sum)',
          op: 'allReduce #1 (10 x float32 op=max)',
          kind: 'broadcast #1 (10 x float32 root=0)',
        }[kind];
        expect(e.message).toContain(other);
      }
    }, 240_000);
  }

  it('a collective one rank never calls: CommTimeoutError there, and on the rank that skipped it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zeroring-timeout-'));
    try {
      const rs = await runJob({
        worldSize: 2,
        scenario: 'timeout',
        env: { ZERORING_TIMEOUT_MS: '1500', SIGNAL_DIR: dir },
      });
      const why = explain(rs);
      for (const r of rs) {
        expect(r.code, why).toBe(0);
        expect(errOf(r).name, why).toBe('CommTimeoutError');
      }
      expect(errOf(rs[0]!).message).toContain('barrier #1');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);

  it('a stopped (silent) peer is detected by heartbeats within the timeout', async () => {
    const job = await startJob({ worldSize: 3, scenario: 'silent', env: { ZERORING_TIMEOUT_MS: '2000' } });
    try {
      const survivors = await Promise.all(job.each.slice(0, 2));
      const why = explain(survivors);
      for (const r of survivors) {
        expect(r.code, why).toBe(0);
        const e = errOf(r);
        expect(['PeerLostError', 'CommTimeoutError'], why).toContain(e.name);
        expect(e.message, why).toMatch(/rank 2|waiting for rank/);
      }
    } finally {
      job.kill();
    }
  }, 240_000);

  it('two workers claiming one rank: ConfigError naming the rank, on both (and the rest of the job)', async () => {
    const rs = await runJob({
      worldSize: 3,
      ranks: [0, 1, 1],
      scenario: 'init',
      env: { ZERORING_TIMEOUT_MS: '30000' },
    });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      const e = errOf(r, 'initError');
      expect(e.name, why).toBe('ConfigError');
      expect(e.message, why).toContain('two workers claim RANK=1');
    }
  }, 240_000);

  it('workers disagreeing on WORLD_SIZE get a ConfigError', async () => {
    const rs = await runJob({
      worldSize: 2,
      scenario: 'init',
      env: { ZERORING_TIMEOUT_MS: '30000' },
      rankEnv: (rank): Record<string, string> => (rank === 1 ? { WORLD_SIZE: '3' } : {}),
    });
    const why = explain(rs);
    const errs = rs.map((r) => errOf(r, 'initError'));
    expect(
      errs.map((e) => e.name),
      why,
    ).toEqual(['ConfigError', 'ConfigError']);
    expect(errs[1]!.message, why).toContain('WORLD_SIZE=3');
  }, 240_000);

  it('a stranger without the token is rejected (store, ring, garbage, oversized); the job goes on', async () => {
    const rs = await runJob({ worldSize: 2, scenario: 'auth' });
    const why = explain(rs);
    for (const r of rs) {
      expect(r.code, why).toBe(0);
      expect(r.result!.failures, why).toEqual([]);
      expect(r.result!.rounds as number, why).toBeGreaterThan(1);
    }
    expect(rs[0]!.result!.stranger, why).toEqual({
      storeWrongToken: 'AuthError',
      joinWrongToken: 'AuthError',
      peerGarbage: 4002,
      peerBig: 4002,
      peerText: 4002,
      peerForgedMac: 4001,
      peerRaw: 'closed',
      storeGarbage: 4002,
      storeBig: 4002,
      storeText: 4002,
      storeForgedMac: 4001,
      storeRaw: 'closed',
      peerOversized: 1009,
    });
  }, 240_000);
});
