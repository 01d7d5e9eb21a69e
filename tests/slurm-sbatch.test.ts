// examples/slurm/train.sbatch on a real (one-node) Slurm cluster started here: sbatch runs it with
// --ntasks=2, srun starts `zeroring train` twice with torchrun's variables mapped from
// Slurm's, and the job must end like `zeroring train --nproc 2` with the same arguments (same
// parameters, bit for bit). Also, without daemons: the script's mapping of Slurm's compressed
// per-node process counts to LOCAL_WORLD_SIZE for nodes other than this one, and its refusal to start
// without a token.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@zeroring/comm';
import { repoRoot, runCli } from './fixtures/cli.ts';
import { cannotRunSlurm, SlurmCluster } from './fixtures/slurm.ts';

const script = join(repoRoot, 'examples', 'slurm', 'train.sbatch');
const root = mkdtempSync(join(tmpdir(), 'zr-slurm-test-'));
const common = (
  '--backend wasm --steps 3 --batch-size 2 --eval-interval 2 --eval-batches 2 --sample-tokens 20 --seed 7 ' +
  '--warmup-steps 1'
).split(' ');
const summaryOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));

// The cluster starts while the file is collected, so that a machine where the daemons cannot
// run says why in the skipped test's name; CI installs and runs them, and fails instead.
let why = await cannotRunSlurm();
let cluster: SlurmCluster | undefined;
if (!why) {
  cluster = new SlurmCluster();
  try {
    await cluster.start();
  } catch (e) {
    why = `the daemons did not start: ${(e as Error).message.split('\n')[0]}`;
    if (process.env.CI) throw e;
    cluster = undefined;
  }
}
if (why && process.env.CI) throw new Error(`CI runs the Slurm test, but cannot run a Slurm cluster: ${why}`);

afterAll(async () => {
  const left = (await cluster?.stop()) ?? [];
  rmSync(root, { recursive: true, force: true });
  expect(left, 'processes of the Slurm cluster left running').toEqual([]);
}, 60_000);

/** sbatch --wait to the job's end: its exit status is the job's. */
function sbatchWait(args: string[], env: NodeJS.ProcessEnv, timeoutMs: number) {
  return new Promise<{ code: number | null; output: string }>((resolve) => {
    const child = spawn('sbatch', ['--wait', ...args], { env, cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[test] sbatch --wait still waiting after ${timeoutMs} ms; killed\n${cluster?.logs() ?? ''}`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

if (why) {
  describe('examples/slurm/train.sbatch on a one-node Slurm cluster', () => {
    it.skip(`skipped: cannot run a Slurm cluster here (${why})`, () => {});
  });
} else {
  describe('examples/slurm/train.sbatch on a one-node Slurm cluster', () => {
    it('sbatch --ntasks=2 trains like zeroring train --nproc 2, token from a file', async () => {
      const c = cluster!;
      const tokenFile = join(root, 'token');
      writeFileSync(tokenFile, randomBytes(16).toString('hex'), { mode: 0o600 });
      const out = join(root, 'slurm-run');
      const env: NodeJS.ProcessEnv = {
        ...c.env,
        // `zeroring` as a user has it installed: the workspace's bin shim, through PATH.
        PATH: `${join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH}`,
        ZERORING_TOKEN_FILE: tokenFile,
        MASTER_PORT: String(await freePort()),
        ZERORING_LOG_FORMAT: 'json',
      };
      delete env.ZERORING_TOKEN;
      delete env.ZERORING_LOG_LEVEL;
      // --nodes and --ntasks override the script's #SBATCH lines (2 nodes × 2 processes).
      const jobOut = join(root, 'job-%j.out');
      const args = ['--nodes=1', '--ntasks=2', `--output=${jobOut}`, script, ...common, '--out', out];
      const job = await sbatchWait(args, env, 150_000);
      const logs = readdirSync(root).filter((f) => /^job-\d+\.out$/.test(f));
      const printed = logs.map((f) => readFileSync(join(root, f), 'utf8')).join('\n');
      const why = `${job.output}\njob output:\n${printed}\n${c.logs()}`;
      expect(job.code, why).toBe(0);
      expect(logs, why).toHaveLength(1);
      expect(c.queue(), why).toBe('');

      const ref = join(root, 'launched');
      const r = await runCli(['train', '--nproc', '2', ...common, '--out', ref]);
      expect(r.code, r.output).toBe(0);

      const s = summaryOf(out);
      // nproc is the run's LOCAL_WORLD_SIZE: the script's reading of SLURM_STEP_TASKS_PER_NODE.
      expect(s, why).toMatchObject({ steps: 3, strategy: 'ddp', worldSize: 2, config: { backend: 'wasm', nproc: 2 } });
      expect(s.paramChecksum, why).toBe(summaryOf(ref).paramChecksum);
      // Rank 0 alone speaks: one sample, and every log line is rank 0's.
      expect(printed.split('--- sample ---').length - 1, why).toBe(1);
      const ranks = printed
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { rank?: number }).rank);
      expect(ranks.length, why).toBeGreaterThan(0);
      expect(new Set(ranks), why).toEqual(new Set([0]));
    }, 240_000);
  });
}

describe('examples/slurm/train.sbatch without a cluster', () => {
  // The per-process part of the script, run by bash with the variables srun would set on other nodes.
  const perTask = /srun [^\n]*bash -c '([^']*)' zeroring-rank "\$@"/.exec(readFileSync(script, 'utf8'))?.[1];
  const bin = mkdtempSync(join(tmpdir(), 'zr-slurm-bin-'));
  afterAll(() => rmSync(bin, { recursive: true, force: true }));
  // What each process execs, in place of zeroring: the variables it was given.
  writeFileSync(join(bin, 'zeroring'), '#!/bin/sh\necho "$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $*"\n');
  chmodSync(join(bin, 'zeroring'), 0o755);

  it.each([
    ['4(x2),2', 0, '4'],
    ['4(x2),2', 1, '4'],
    ['4(x2),2', 2, '2'],
    ['3', 0, '3'],
    ['2,1(x3)', 3, '1'],
  ])('SLURM_STEP_TASKS_PER_NODE=%s on node %i: LOCAL_WORLD_SIZE=%s', (counts, node, local) => {
    expect(perTask, 'the srun line of train.sbatch').toBeDefined();
    const env = {
      PATH: `${bin}:${process.env.PATH}`,
      SLURM_PROCID: '9',
      SLURM_NTASKS: '10',
      SLURM_LOCALID: '1',
      SLURM_NODEID: String(node),
      SLURM_STEP_TASKS_PER_NODE: counts,
    };
    // stdin not a socket: bash would read ~/.bashrc, taking itself for an rsh command.
    const r = spawnSync('bash', ['-c', perTask!, 'zeroring-rank', '--steps', '5'], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`9 10 1 ${local} train --steps 5\n`);
  });

  it('refuses to start without ZERORING_TOKEN or a readable ZERORING_TOKEN_FILE', () => {
    const env = { PATH: process.env.PATH, ZERORING_TOKEN_FILE: join(bin, 'absent') };
    const r = spawnSync('bash', [script], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^train\.sbatch: ZERORING_TOKEN is not set and ZERORING_TOKEN_FILE='.*absent' is not a/);
  });
});
