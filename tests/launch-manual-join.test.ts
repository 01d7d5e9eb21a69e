// A worker started without the launcher, with torchrun's variables set by hand (as Slurm or a
// Kubernetes operator would), joins the group the same way: here, the allreduce-hello example.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '../packages/comm/src/launch/index.ts';
import { repoRoot, runCli, stopRunning } from './fixtures/launch/helpers.ts';

const example = 'examples/allreduce-hello/main.ts';
const started: ChildProcess[] = [];

// A hung worker must not outlive a failed test.
afterEach(async () => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await stopRunning();
});

interface ByHand {
  done: Promise<{ code: number | null; out: string; err: string }>;
  /** Output so far, for a useful failure message when a rank never finishes. */
  sofar: () => string;
}

function startByHand(env: NodeJS.ProcessEnv): ByHand {
  const child = spawn(process.execPath, ['--import', 'tsx', example], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return {
    done: new Promise((resolve) => child.once('close', (code) => resolve({ code, out, err }))),
    sofar: () => `RANK=${env.RANK} stdout:\n${out}\nstderr:\n${err}`,
  };
}

describe('joining without the launcher', () => {
  it('three processes started by hand with RANK/WORLD_SIZE/MASTER_* set form one group', async () => {
    const port = await freePort();
    // A comm timeout well inside the test's own, so a stuck rank reports why instead of hanging.
    const common = { WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ZERORING_TOKEN: 'set-by-hand-token', ZERORING_TIMEOUT_MS: '60000' };
    // Started in reverse order: rank 0 (the store's host) comes last, the others wait for it.
    const runs = [2, 1, 0].map((rank) => startByHand({ ...common, RANK: String(rank), LOCAL_RANK: String(rank), ZERORING_LOG_LEVEL: 'debug' }));
    let timer: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`not all ranks finished in 90 s:\n${runs.map((r) => r.sofar()).join('\n')}`)), 90_000);
    });
    const results = await Promise.race([Promise.all(runs.map((r) => r.done)), stuck]).finally(() => clearTimeout(timer));
    for (const [i, r] of results.entries()) {
      const rank = 2 - i;
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(`rank ${rank} of 3: sum = 6 (expected 6)`);
    }
  });

  it('the same example through zeroring launch', async () => {
    const run = runCli(['launch', '--nproc-per-node', '2', example]);
    expect((await run.exited).code, run.stderr()).toBe(0);
    expect(run.stdout()).toContain('[rank 0] rank 0 of 2: sum = 3 (expected 3)');
    expect(run.stdout()).toContain('[rank 1] rank 1 of 2: sum = 3 (expected 3)');
  });
});
