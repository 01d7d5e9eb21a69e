// A worker started without the launcher, with torchrun's variables set by hand (as Slurm or a
// Kubernetes operator would), joins the group the same way: here, the allreduce-hello example.
// And workers started by hand with different ZERORING_TOKEN values all fail within seconds, each
// with one line that says so, on the side that refused as on the side that was refused.
import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort } from '@zeroring/comm';
import { repoRoot, runCli, stopRunning } from './fixtures/launch/helpers.ts';

const example = 'examples/allreduce-hello/main.ts';
const started: ChildProcess[] = [];

// A hung worker must not outlive a failed test.
afterEach(async () => {
  for (const c of started.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await stopRunning();
});

interface ByHand {
  /** `ms`: from spawning the process to its end. */
  done: Promise<{ code: number | null; out: string; err: string; ms: number }>;
  /** Output so far, for a useful failure message when a rank never finishes. */
  sofar: () => string;
}

function startByHand(env: NodeJS.ProcessEnv): ByHand {
  const t0 = Date.now();
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
    done: new Promise((resolve) => child.once('close', (code) => resolve({ code, out, err, ms: Date.now() - t0 }))),
    sofar: () => `RANK=${env.RANK} stdout:\n${out}\nstderr:\n${err}`,
  };
}

/** Waits for every run, or fails naming what each printed so far once `ms` have passed. */
async function allDone(runs: ByHand[], ms: number) {
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise<never>((_, reject) => {
    const sofar = () => runs.map((r) => r.sofar()).join('\n');
    timer = setTimeout(() => reject(new Error(`not all ranks finished in ${ms} ms:\n${sofar()}`)), ms);
  });
  return Promise.race([Promise.all(runs.map((r) => r.done)), stuck]).finally(() => clearTimeout(timer));
}

describe('joining without the launcher', () => {
  it('three processes started by hand with RANK/WORLD_SIZE/MASTER_* set form one group', async () => {
    const port = await freePort();
    // A comm timeout well inside the test's own, so a stuck rank reports why instead of hanging.
    const common = {
      WORLD_SIZE: '3',
      LOCAL_WORLD_SIZE: '3',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      ZERORING_TOKEN: 'set-by-hand-token',
      ZERORING_TIMEOUT_MS: '60000',
    };
    // Started in reverse order: rank 0 (the store's host) comes last, the others wait for it.
    const runs = [2, 1, 0].map((rank) =>
      startByHand({ ...common, RANK: String(rank), LOCAL_RANK: String(rank), ZERORING_LOG_LEVEL: 'debug' }),
    );
    const results = await allDone(runs, 90_000);
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

interface LogLine {
  level: number;
  msg: string;
  err?: { stack?: string };
}

/** The JSON log lines of a run (anything else it printed is returned as is, to fail the checks). */
function logLines(err: string): Array<LogLine | string> {
  return err
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as LogLine;
      } catch {
        return l;
      }
    });
}

describe('joining by hand with different ZERORING_TOKEN values', () => {
  // Far below the 120 s rendezvous timeout (left at its default here) that rank 0 used to wait
  // out before blaming the address, port or world size; seconds of it are node and tsx starting.
  const FAST_MS = 15_000;
  const tokens = { job: 'the-job-token-4f2a9c', other: 'another-token-77d01e' };

  type EnvOf = (rank: number) => NodeJS.ProcessEnv;
  /** Starts the ranks in order (rank 0, the store's host, first), each with its token. */
  async function run(worldSize: number, tokenOf: (rank: number) => string, extra: EnvOf = () => ({})) {
    const port = await freePort();
    const runs: ByHand[] = [];
    for (let rank = 0; rank < worldSize; rank++) {
      runs.push(
        startByHand({
          WORLD_SIZE: String(worldSize),
          LOCAL_WORLD_SIZE: String(worldSize),
          RANK: String(rank),
          LOCAL_RANK: String(rank),
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(port),
          ZERORING_TOKEN: tokenOf(rank),
          ZERORING_LOG_FORMAT: 'json',
          // The defaults: log level info, timeouts 120 s.
          ZERORING_LOG_LEVEL: undefined,
          ZERORING_TIMEOUT_MS: undefined,
          ZERORING_RENDEZVOUS_TIMEOUT_MS: undefined,
          ...extra(rank),
        }),
      );
      await new Promise((r) => setTimeout(r, 200));
    }
    const results = await allDone(runs, 60_000);
    const why = results.map((r, rank) => `rank ${rank} (exit ${r.code}, ${r.ms} ms):\n${r.out}${r.err}`).join('\n');
    return { port, results, why };
  }

  /** Exited non-zero within FAST_MS with exactly one error line, an AuthError naming ZERORING_TOKEN; returns it. */
  function oneAuthLine(r: { code: number | null; out: string; err: string; ms: number }, why: string): LogLine {
    expect(r.code, why).toBe(1);
    expect(r.ms, why).toBeLessThan(FAST_MS);
    const lines = logLines(r.err);
    expect(
      lines.filter((l) => typeof l === 'string'),
      why,
    ).toEqual([]);
    const errors = (lines as LogLine[]).filter((l) => l.level >= 50);
    expect(errors.length, why).toBe(1);
    expect(errors[0]!.msg, why).toMatch(/^AuthError: .*ZERORING_TOKEN/);
    for (const t of Object.values(tokens)) expect(r.out + r.err, why).not.toContain(t);
    return errors[0]!;
  }

  const refusedLine = (port: number) =>
    `AuthError: the rendezvous store at 127.0.0.1:${port} refused this worker's ZERORING_TOKEN: the tokens differ ` +
    '(expected the same ZERORING_TOKEN on every worker of the job)';
  const refusingLine = (port: number, rank: number | string, worldSize: number) =>
    new RegExp(
      `^AuthError: the rendezvous store at 127\\.0\\.0\\.1:${port} ` +
        `refused a worker at 127\\.0\\.0\\.1:\\d+ claiming RANK=${rank}: ` +
        `its ZERORING_TOKEN differs from the store's, so the world of WORLD_SIZE=${worldSize} cannot form`,
    );

  it('a worker with another token: it, rank 0 (the store) and a rank that joined fail fast, a line each', async () => {
    const { port, results, why } = await run(3, (rank) => (rank === 2 ? tokens.other : tokens.job));
    for (const rank of [0, 1]) expect(oneAuthLine(results[rank]!, why).msg, why).toMatch(refusingLine(port, 2, 3));
    expect(oneAuthLine(results[2]!, why).msg, why).toBe(refusedLine(port));
    for (const r of results) {
      expect(r.out + r.err, why).not.toMatch(/^\s+at /m);
      expect(r.err, why).not.toContain('"stack"');
    }
  }, 120_000);

  it("rank 0 (the store's host) with another token: all fail fast; at debug level with the stack", async () => {
    const debugRank = 2;
    const { port, results, why } = await run(
      3,
      (rank) => (rank === 0 ? tokens.other : tokens.job),
      (rank) => (rank === debugRank ? { ZERORING_LOG_LEVEL: 'debug' } : {}),
    );
    expect(oneAuthLine(results[0]!, why).msg, why).toMatch(refusingLine(port, '[12]', 3));
    expect(oneAuthLine(results[1]!, why).msg, why).toBe(refusedLine(port));
    expect(results[0]!.err + results[1]!.err, why).not.toContain('"stack"');
    const debug = oneAuthLine(results[debugRank]!, why);
    expect(debug.msg, why).toBe(refusedLine(port));
    expect(debug.err?.stack, why).toMatch(/^AuthError: [^]*\n {4}at /);
  }, 120_000);
});
