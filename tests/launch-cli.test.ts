// zeroring launch as a user runs it: the real CLI starting real worker processes.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, isAlive, readyPids, runCli, stopRunning } from './fixtures/launch/helpers.ts';

afterEach(stopRunning);

function envLines(stdout: string): Map<number, Record<string, string | number>> {
  const byRank = new Map<number, Record<string, string | number>>();
  for (const m of stdout.matchAll(/^\[rank (\d+)\] ENV (.*)$/gm)) byRank.set(Number(m[1]), JSON.parse(m[2]!));
  return byRank;
}

describe('zeroring launch (CLI)', () => {
  it('gives every worker torchrun env, a secret token, and rank-prefixed whole lines', async () => {
    const run = runCli(['launch', '--nproc-per-node', '3', fixture('env-dump.ts'), '--flag', 'x']);
    const { code } = await run.exited;
    expect(code, run.stderr()).toBe(0);
    const envs = envLines(run.stdout());
    expect([...envs.keys()].sort()).toEqual([0, 1, 2]);
    const ports = new Set<string | number | undefined>();
    const tokens = new Set<string | number | undefined>();
    for (const [rank, e] of envs) {
      expect(e).toMatchObject({
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: '3',
        LOCAL_WORLD_SIZE: '3',
        GROUP_RANK: '0',
        MASTER_ADDR: '127.0.0.1',
        ZERORING_RESTART_COUNT: '0',
        ZERORING_MAX_RESTARTS: '0',
        tokenLength: 64,
        args: JSON.stringify(['--flag', 'x']),
      });
      expect(Number(e.MASTER_PORT)).toBeGreaterThan(0);
      ports.add(e.MASTER_PORT);
      tokens.add(e.tokenHash);
    }
    expect(ports.size).toBe(1);
    expect(tokens.size).toBe(1);
    for (const rank of [0, 1, 2]) {
      expect(run.stdout()).toContain(`[rank ${rank}] first line\n[rank ${rank}] second line\n`);
      expect(run.stdout()).toContain(`[rank ${rank}] no newline at end\n`);
      expect(run.stderr()).toContain(`[rank ${rank}] to stderr\n`);
    }
    // Every line is prefixed: nothing from a worker escapes unlabelled.
    for (const line of run.stdout().trimEnd().split('\n')) expect(line).toMatch(/^\[rank \d\] /);
  });

  it('keeps a ZERORING_TOKEN the user exported and never prints it', async () => {
    const token = 'user-secret-' + 'x'.repeat(20);
    const run = runCli(['launch', '--nproc-per-node', '2', fixture('env-dump.ts')], { ZERORING_TOKEN: token });
    expect((await run.exited).code).toBe(0);
    for (const e of envLines(run.stdout()).values()) expect(e.tokenLength).toBe(token.length);
    expect(run.stdout() + run.stderr()).not.toContain(token);
  });

  it('uses the given master address/port and node rank for global ranks', async () => {
    const run = runCli(
      [
        'launch',
        '--nproc-per-node',
        '2',
        '--nnodes',
        '3',
        '--node-rank',
        '2',
        '--master-addr',
        '127.0.0.1',
        '--master-port',
        '29555',
        fixture('env-dump.ts'),
      ],
      { ZERORING_TOKEN: 'shared-by-all-nodes' },
    );
    expect((await run.exited).code, run.stderr()).toBe(0);
    const envs = envLines(run.stdout());
    expect([...envs.keys()].sort()).toEqual([4, 5]);
    expect(envs.get(5)).toMatchObject({
      RANK: '5',
      LOCAL_RANK: '1',
      WORLD_SIZE: '6',
      LOCAL_WORLD_SIZE: '2',
      GROUP_RANK: '2',
      MASTER_PORT: '29555',
    });
  });

  it('rejects bad arguments with a message naming the value', async () => {
    const noToken = runCli(
      [
        'launch',
        '--nproc-per-node',
        '1',
        '--nnodes',
        '2',
        '--master-addr',
        '10.0.0.1',
        '--master-port',
        '29500',
        fixture('env-dump.ts'),
      ],
      { ZERORING_TOKEN: '' },
    );
    expect((await noToken.exited).code).not.toBe(0);
    expect(noToken.stderr()).toMatch(/ZERORING_TOKEN is not set/);
    const badRank = runCli([
      'launch',
      '--nproc-per-node',
      '1',
      '--nnodes',
      '2',
      '--node-rank',
      '2',
      '--master-addr',
      'h',
      '--master-port',
      '1',
      fixture('env-dump.ts'),
    ]);
    expect((await badRank.exited).code).not.toBe(0);
    expect(badRank.stderr()).toMatch(/node-rank is 2, expected an integer in \[0, 1\]/);
    const badExt = runCli(['launch', '--nproc-per-node', '1', fixture('helpers.ts').replace(/\.ts$/, '.py')]);
    expect((await badExt.exited).code).not.toBe(0);
    expect(badExt.stderr()).toMatch(/does not exist|expected \.ts, \.js, \.mjs or \.cjs/);
  });

  it('stops the other workers when one fails and names the rank and exit code', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-launch-'));
    try {
      const run = runCli(['launch', '--nproc-per-node', '3', fixture('fail-one.mjs'), dir, '1', '3']);
      const { code } = await run.exited;
      expect(code).toBe(3);
      expect(run.stderr()).toMatch(/rank 1 failed with exit code 3; stopping the other workers/);
      expect(run.stderr()).toMatch(/job failed: rank 1 \(local rank 1\) exited with exit code 3/);
      const pids = readyPids(run.stdout());
      expect(pids).toHaveLength(3);
      for (const pid of pids) expect(isAlive(pid)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names a signal that killed a worker, and SIGKILLs workers that ignore SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-launch-'));
    try {
      const run = runCli(
        ['launch', '--nproc-per-node', '2', '--grace-period', '300', fixture('fail-one.mjs'), dir, '0', 'SIGKILL'],
        { IGNORE_TERM: '1' },
      );
      const { code } = await run.exited;
      expect(code).toBe(128 + 9);
      expect(run.stderr()).toMatch(/rank 0 \(local rank 0\) exited with signal SIGKILL/);
      expect(run.stdout()).toMatch(/\[rank 1\] ignoring SIGTERM/);
      for (const pid of readyPids(run.stdout())) expect(isAlive(pid)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`forwards ${signal} to every worker and exits with 128 + signal`, async () => {
      const run = runCli(['launch', '--nproc-per-node', '2', fixture('signal-wait.mjs')]);
      await run.waitFor('ready pid', 2);
      run.child.kill(signal);
      const { code } = await run.exited;
      expect(code).toBe(signal === 'SIGINT' ? 130 : 143);
      expect(run.stdout()).toContain(`[rank 0] got ${signal}`);
      expect(run.stdout()).toContain(`[rank 1] got ${signal}`);
      for (const pid of readyPids(run.stdout())) expect(isAlive(pid)).toBe(false);
    });
  }

  it('--max-restarts restarts the whole group, counting attempts in ZERORING_RESTART_COUNT', async () => {
    const run = runCli(['launch', '--nproc-per-node', '2', '--max-restarts', '2', fixture('fail-once.mjs')]);
    const { code } = await run.exited;
    expect(code, run.stderr()).toBe(0);
    expect(run.stderr()).toMatch(/restarting the local group \(restart 1 of 2\) after rank 1 failed with exit code 7/);
    expect(run.stdout()).toContain('[rank 0] attempt 1 of max 2 ok');
    expect(run.stdout()).toContain('[rank 1] attempt 1 of max 2 ok');
    expect(run.stderr()).not.toMatch(/restart 2 of 2/);
  });

  it('without restarts the same failure ends the job', async () => {
    const run = runCli(['launch', '--nproc-per-node', '2', fixture('fail-once.mjs')]);
    expect((await run.exited).code).toBe(7);
    expect(run.stderr()).toMatch(/job failed: rank 1 .* exit code 7/);
  });
});
