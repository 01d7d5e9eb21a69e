// Losing the rendezvous store with real processes. Rank 0 hosts the store in-process, so a
// SIGKILLed rank 0 takes the store down with it: the other ranks must see PeerLostError
// naming rank 0 on every store call (pending or later) and keep the ring's own PeerLostError
// for collectives, and no rank may crash with an uncaught error or hang. A rank 0 that
// simply finishes first and exits is no failure at all for the others' destroy().
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { PeerLostError, StoreClient } from '@zeroring/comm';
import { explain, startJob, type WorkerResult } from './fixtures/comm/spawn.ts';

const WORKER = fileURLToPath(new URL('./fixtures/store-loss/worker.ts', import.meta.url));
const STORE_HOST = fileURLToPath(new URL('./fixtures/store-loss/store-host.ts', import.meta.url));

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
  const job = await startJob({
    worldSize,
    scenario,
    worker: WORKER,
    timeoutMs,
    env: { SIGNAL_DIR: dir, ZERORING_TIMEOUT_MS: '60000' },
  });
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
  it('rank 0 killed while the others idle: collectives and store calls fail, PeerLostError naming it', async () => {
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
      expect(
        errors.map((e) => e.name),
        why,
      ).toEqual(['PeerLostError', 'PeerLostError']);
      expect(errors[0]!.rank, why).toBe(0);
      // The ring's error (which collective), not the store's.
      expect(errors[0]!.message, why).toContain('allReduce');
      expect(errors[0]!.message, why).not.toContain('rendezvous store');
      expect((r.result!.later as ErrInfo).name, why).toBe('PeerLostError');
      expectStoreLost(r.result!.storeGet as ErrInfo, why);
    }
  }, 240_000);

  it('rank 0 killed while the others wait in store get(): it rejects with PeerLostError naming rank 0', async () => {
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

  it('rank 0 killed during the rendezvous: initProcessGroup rejects with PeerLostError naming rank 0', async () => {
    const rs = await run('rendezvous', 4);
    const why = explain(rs);
    expect(rs[0]!.signal, why).toBe('SIGKILL');
    for (const r of rs.slice(1)) expectCleanSurvivor(r, why);
    expect(rs[3]!.result, why).toMatchObject({ skipped: true });
    // Rank 2 only hears of rank 0 through the store.
    const e = rs[2]!.result!.initError as ErrInfo;
    expectStoreLost(e, why);
    expect(e.message, why).toMatch(/during (rendezvous|store get\('g0\/addr\/1'\))/);
    // Rank 1 may notice it on its ring dial to rank 0 instead; either way a PeerLostError naming rank 0.
    expect(rs[1]!.result!.initError, why).toMatchObject({ name: 'PeerLostError', rank: 0 });
  }, 240_000);

  it('rank 0 finishing first and exiting cleanly is no error for the others destroy()', async () => {
    const rs = await run('clean-exit', 3);
    const why = explain(rs);
    for (const r of rs) {
      expectCleanSurvivor(r, why);
      expect(r.result!.sum, why).toBe(6);
      expect(destroyOf(r), why).toEqual({ name: 'none', message: '' });
      // Nothing said about the store going away, and nothing logged as an error.
      expect(r.stderr + r.stdout, why).not.toMatch(/rendezvous store|"level":50/);
    }
  }, 240_000);
});

/** A store in its own process; resolves once it listens. */
async function storeHost(token: string): Promise<{ child: ChildProcess; port: number; exited: Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', STORE_HOST], {
    env: { ...process.env, ZERORING_TOKEN: token, ZERORING_LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^PORT (\d+)$/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code, signal) =>
      reject(new Error(`store host exited (${code ?? signal}) before listening: ${out}`)),
    );
  });
  return { child, port, exited };
}

describe('a StoreClient whose store process goes away', () => {
  const hosts: ChildProcess[] = [];
  afterEach(() => {
    for (const c of hosts.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  for (const how of ['killed', 'closed'] as const)
    for (const hostRank of [0, null] as const) {
      const host = hostRank === null ? 'a launcher (outside the job)' : 'rank 0';
      it(`store ${how}, hosted by ${host}: pending and later calls get PeerLostError, onFailure once`, async () => {
        const token = randomBytes(16).toString('hex');
        const h = await storeHost(token);
        hosts.push(h.child);
        const c = await StoreClient.connect({
          host: '127.0.0.1',
          port: h.port,
          token,
          rank: 1,
          hostRank,
          timeoutMs: 60_000,
        });
        const failures: Error[] = [];
        c.onFailure = (e) => failures.push(e);
        await c.set('a', 1);
        const pendingGet = c.get('never-set').catch((e: unknown) => e);
        const pendingWait = c.wait(['x', 'y']).catch((e: unknown) => e);
        // The requests are answered in order: once this returns, both waits are parked server-side.
        expect(await c.check(['a'])).toBe(true);
        if (how === 'killed') h.child.kill('SIGKILL');
        else h.child.stdin!.end();
        await h.exited;
        const errs = [await pendingGet, await pendingWait, await c.add('n', 1).catch((e: unknown) => e)];
        for (const [i, e] of errs.entries()) {
          expect(e, String(e)).toBeInstanceOf(PeerLostError);
          const p = e as PeerLostError;
          expect(p.rank).toBe(hostRank ?? -1);
          expect(p.reportedBy).toBe(1);
          expect(p.collective).toBe(["store get('never-set')", 'store wait(x, y)', "store add('n')"][i]);
          expect(p.message).toContain(`rendezvous store`);
          expect(p.message).toContain(`${h.port}`);
          expect(p.message).toContain(how === 'killed' ? 'broke' : 'closed the rendezvous store');
          if (hostRank === null) expect(p.message).toContain('hosted outside the job');
          else expect(p.message).toMatch(/^rank 0 lost/);
        }
        expect(failures.length).toBe(1);
        expect(failures[0]).toBeInstanceOf(PeerLostError);
        expect(failures[0]!.message).toContain('while idle');
        c.close();
      }, 120_000);
    }
});
