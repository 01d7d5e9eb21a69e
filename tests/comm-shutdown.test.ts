// Clean shutdown races. Short jobs whose ranks finish their last collective at different
// moments (random stalls and delays) and destroy() at once: a neighbour's leave must never cut
// off the chunks a slower rank still needs, nor make a rank wait forever for data that will
// not come. Each job must end with the right results on every rank and every process must
// exit by itself, well within its bound. (This reproduced a hang: with 3 ranks, one rank's
// last allReduce never finished after a neighbour's bye disabled both its receive path and
// its timeout.)
import { describe, expect, it } from 'vitest';
import { explain, runJob, type WorkerResult } from './fixtures/comm/spawn.ts';

const JOBS = Number(process.env.SHUTDOWN_JOBS ?? 24);

function summary(rs: WorkerResult[]): string {
  return rs
    .map(
      (r) => `rank ${r.rank}: code=${r.code} signal=${r.signal} ${r.result ? JSON.stringify(r.result) : 'no result'}`,
    )
    .join('\n');
}

describe('clean shutdown', () => {
  it(`${JOBS} short 3- and 4-rank jobs with random stalls: every rank ends its last collective, exits`, async () => {
    const bad: string[] = [];
    for (let j = 0; j < JOBS; j++) {
      const worldSize = 3 + (j % 2);
      // A hang shows as a killed worker: the job bound is far above a healthy job (~2-5 s) and the
      // comm timeout, so any rank still running then was stuck.
      const rs = await runJob({
        worldSize,
        scenario: 'shutdown',
        env: { JOB_SEED: String(100 + j), ZERORING_TIMEOUT_MS: '10000' },
        timeoutMs: 45_000,
      });
      const ok = rs.every(
        (r) => r.code === 0 && Array.isArray(r.result?.failures) && (r.result.failures as string[]).length === 0,
      );
      if (!ok)
        bad.push(`job ${j} (${worldSize} ranks, seed ${100 + j}):\n${summary(rs)}\n${explain(rs).slice(0, 4000)}`);
    }
    expect(bad.join('\n\n')).toBe('');
  }, 1_500_000);

  it('a rank needing data from a neighbour that left cleanly gets PeerLostError at once, no hang', async () => {
    const rs = await runJob({
      worldSize: 3,
      scenario: 'leave',
      env: { ZERORING_TIMEOUT_MS: '60000' },
      timeoutMs: 120_000,
    });
    const why = explain(rs);
    for (const r of rs) expect(r.code, why).toBe(0);
    expect(rs[2]!.result, why).toMatchObject({ left: true });
    for (const r of rs.slice(0, 2)) {
      const e = r.result!.err as { name: string; message: string; rank: number; ms: number };
      expect(e.name, why).toBe('PeerLostError');
      expect(e.rank, why).toBe(2);
      expect(e.message, why).toContain('destroy()');
      // Noticed from the bye, long before the 60 s timeout.
      expect(e.ms, why).toBeLessThan(30_000);
    }
  }, 240_000);
});
