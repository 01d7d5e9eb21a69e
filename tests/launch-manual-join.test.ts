// A worker started without the launcher, with torchrun's variables set by hand (as Slurm or a
// Kubernetes operator would), joins the group the same way: here, the allreduce-hello example.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { freePort } from '../packages/comm/src/launch/index.ts';
import { repoRoot, runCli } from './fixtures/launch/helpers.ts';

const example = 'examples/allreduce-hello/main.ts';

function startByHand(env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', example], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, out, err })));
}

describe('joining without the launcher', () => {
  it('three processes started by hand with RANK/WORLD_SIZE/MASTER_* set form one group', async () => {
    const port = await freePort();
    const common = { WORLD_SIZE: '3', LOCAL_WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ZERORING_TOKEN: 'set-by-hand-token' };
    // Started in reverse order: rank 0 (the store's host) comes last, the others wait for it.
    const runs = [2, 1, 0].map((rank) => startByHand({ ...common, RANK: String(rank), LOCAL_RANK: String(rank) }));
    const results = await Promise.all(runs);
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
