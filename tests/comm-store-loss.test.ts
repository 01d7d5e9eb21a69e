// Losing the rendezvous store with real processes. Rank 0 hosts the store in-process, so a
// SIGKILLed rank 0 takes the store down with it: the other ranks must see PeerLostError
// naming rank 0 on every store call (pending or later) and keep the ring's own PeerLostError
// for collectives, and no rank may crash with an uncaught error or hang. A rank 0 that
// simply finishes first and exits is no failure at all for the others' destroy().
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { explain, startJob, type WorkerResult } from './fixtures/comm/spawn.ts';

const WORKER = fileURLToPath(new URL('./fixtures/store-loss/worker.ts', import.meta.url));

type ErrInfo = { name: string; message: string; rank?: number; collective?: string | null };

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs a job and tells the workers (SIGNAL_DIR/rank0-gone) once rank 0's process has exited. */
async function run(scenario: string, worldSize: number, timeoutMs = 120_000): Promise<WorkerResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'zeroring-store-loss-'));
  dirs.push(dir);
  // A long comm timeout: every loss here must be noticed from the closed sockets, not a timer.
  const job = await startJob({ worldSize, scenario, worker: WORKER, timeoutMs, env: { SIGNAL_DIR: dir, ZERORING_TIMEOUT_MS: '60000' } });
  try {
    void job.each[0]!.then(() => writeFileSync(join(dir, 'rank0-gone'), 'x'));
    return await job.done;
  } finally {
    job.kill();
  }
}

function destroyOf(r: WorkerResult): ErrInfo | null {
  const m = /^DESTROY (.*)$/m.exec(r.stdout);
  return m ? (JSON.parse(m[1]!) as ErrInfo) : null;
}

/** A survivor exited by itself, with its result, and never printed an uncaught error. */
function expectCleanSurvivor(r: WorkerResult, why: string): void {
  expect(r.code, why).toBe(0);
  expect(r.result, why).not.toBeNull();
  expect(r.result!.error, why).toBeUndefined();
  expect(r.stderr, why).not.toMatch(/Uncaught|Unhandled|^\s+at /m);
}

function expectStoreLost(e: ErrInfo, why: string): void {
  expect(e.name, why).toBe('PeerLostError');
  expect(e.rank, why).toBe(0);
  expect(e.message, why).toContain('rendezvous store');
}

describe('losing the rendezvous store (hosted by rank 0)', () => {
  it('rank 0 killed while the others are idle: collectives and store calls fail with PeerLostError naming rank 0', async () => {
    const rs = await run('idle', 3);
    const why = explain(rs);
    expect(rs[0]!.signal, why).toBe('SIGKILL');
    for (const r of rs.slice(1)) {
      expectCleanSurvivor(r, why);
      const res = r.result as Record<string, ErrInfo>;
      expect(res.collective!.name, why).toBe('PeerLostError');
      expect(res.collective!.rank, why).toBe(0);
      expectStoreLost(res.storeGet!, why);
      expectStoreLost(res.storeSet!, why);
    }
  }, 240_000);

  it('rank 0 killed mid-collective: the ring PeerLostError for collectives, PeerLostError for the store', async () => {
    const rs = await run('collective', 3);
    const why = explain(rs);
    expect(rs[0]!.signal, why).toBe('SIGKILL');
    for (const r of rs.slice(1)) {
      expectCleanSurvivor(r, why);
      const errors = r.result!.errors as ErrInfo[];
      expect(errors.map((e) => e.name), why).toEqual(['PeerLostError', 'PeerLostError']);
      expect(errors[0]!.rank, why).toBe(0);
      // The ring's error (which collective), not the store's.
      expect(errors[0]!.message, why).toContain('allReduce');
      expect(errors[0]!.message, why).not.toContain('rendezvous store');
      expect((r.result!.later as ErrInfo).name, why).toBe('PeerLostError');
      expectStoreLost(r.result!.storeGet as ErrInfo, why);
    }
  }, 240_000);

  it('rank 0 killed while the others wait in store get(): the get rejects with PeerLostError naming rank 0', async () => {
    const rs = await run('store-wait', 3);
    const why = explain(rs);
    expect(rs[0]!.signal, why).toBe('SIGKILL');
    for (const r of rs.slice(1)) {
      expectCleanSurvivor(r, why);
      const res = r.result as Record<string, ErrInfo>;
      expectStoreLost(res.storeGet!, why);
      expect(res.storeGet!.message, why).toContain("get('never-set')");
      expectStoreLost(res.later!, why);
      expect(res.collective!.name, why).toBe('PeerLostError');
      expect(res.collective!.rank, why).toBe(0);
    }
  }, 240_000);

  it('rank 0 finishing first and exiting cleanly is no error for the others destroy()', async () => {
    const rs = await run('clean-exit', 3);
    const why = explain(rs);
    for (const r of rs) {
      expectCleanSurvivor(r, why);
      expect(r.result!.sum, why).toBe(6);
      expect(destroyOf(r), why).toEqual({ name: 'none', message: '' });
      // Nothing logged at warn or error level about the store going away.
      expect(r.stderr + r.stdout, why).not.toMatch(/rendezvous store|"level":(40|50)/);
    }
  }, 240_000);
});
