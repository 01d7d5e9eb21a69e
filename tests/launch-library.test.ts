// launch() as `zeroring train --nproc` uses it: output captured through writables, a custom line
// prefix, stopping through an AbortSignal, and the result object.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch } from '@zeroring/comm';
import { ConfigError } from '@zeroring/comm';
import { Collect, fixture, isAlive, readyPids, repoRoot } from './fixtures/launch/helpers.ts';

describe('launch() library', () => {
  it('runs a group to success with captured, custom-prefixed output and extra env', async () => {
    const stdout = new Collect();
    const stderr = new Collect();
    const result = await launch({
      nprocPerNode: 2,
      script: fixture('env-dump.ts'),
      args: ['a b'],
      env: { ZERORING_TOKEN: 'lib-token' },
      cwd: repoRoot,
      stdout,
      stderr,
      linePrefix: (r) => `<${r}> `,
      forwardSignals: false,
    });
    expect(result).toEqual({ exitCode: 0, outcome: 'succeeded', restarts: 0 });
    expect(stdout.text).toContain('<0> first line\n');
    expect(stdout.text).toContain('<1> no newline at end\n');
    expect(stdout.text).toContain('"args":"[\\"a b\\"]"');
    expect(stdout.text).toContain('"tokenLength":9');
    expect(stderr.text).toContain('<1> to stderr\n');
  });

  it('reports the failed worker in the result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-launch-'));
    const messages: string[] = [];
    try {
      const stdout = new Collect();
      const result = await launch({
        nprocPerNode: 2,
        script: fixture('fail-one.mjs'),
        args: [dir, '1', '5'],
        stdout,
        stderr: new Collect(),
        onMessage: (m) => messages.push(m),
        forwardSignals: false,
      });
      expect(result).toMatchObject({
        exitCode: 5,
        outcome: 'failed',
        restarts: 0,
        failure: { rank: 1, localRank: 1, exitCode: 5, signal: null },
      });
      expect(messages.join('\n')).toMatch(/rank 1 failed with exit code 5/);
      for (const pid of readyPids(stdout.text)) expect(isAlive(pid)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops every worker when the AbortSignal fires', async () => {
    const stdout = new Collect();
    const ac = new AbortController();
    const ready = setInterval(() => {
      if (readyPids(stdout.text).length === 3) ac.abort();
    }, 20);
    try {
      const result = await launch({
        nprocPerNode: 3,
        script: fixture('signal-wait.mjs'),
        stdout,
        stderr: new Collect(),
        onMessage: () => {},
        forwardSignals: false,
        abortSignal: ac.signal,
      });
      expect(result).toMatchObject({ exitCode: 143, outcome: 'stopped', stoppedBy: 'SIGTERM' });
      expect(stdout.text.match(/got SIGTERM/g)).toHaveLength(3);
      for (const pid of readyPids(stdout.text)) expect(isAlive(pid)).toBe(false);
    } finally {
      clearInterval(ready);
    }
  });

  it('throws ConfigError naming bad options before starting anything', async () => {
    await expect(launch({ nprocPerNode: 1.5, script: fixture('env-dump.ts') })).rejects.toThrow(ConfigError);
    await expect(
      launch({ nprocPerNode: 2, nnodes: 2, masterAddr: 'h', script: fixture('env-dump.ts') }),
    ).rejects.toThrow(/master-port is not set/);
    await expect(launch({ nprocPerNode: 2, script: fixture('env-dump.txt') })).rejects.toThrow(/does not exist/);
  });
});
