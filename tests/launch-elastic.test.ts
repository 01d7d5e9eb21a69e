// `zeroring launch --nnodes MIN:MAX` on loopback: several launchers of one machine play the
// nodes of an elastic job (each with its own marker, so a "node" can be killed whole), running a
// worker that all-reduces and records its rank, world size and round (restart count).
// - kill -9 of one node (its launcher and workers) mid-round: the two others re-form at world
//   size 2 and finish, and their logs name who left;
// - a launcher started while a round runs waits, and joins at the next re-formation: the world
//   grows;
// - fewer than MIN nodes: a ConfigError line when the rendezvous times out, and a launcher with
//   another token is refused by the agent store; nothing is left running.
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killMarked, leftovers, newMarker, startCli, type StartedCli } from './fixtures/cli.ts';
import { fixture } from './fixtures/launch/helpers.ts';

interface WorkerRecord {
  round: number;
  rank: number;
  worldSize: number;
  env: number;
  sum?: number;
  finished?: boolean;
}

const started: Array<{ run: StartedCli; marker: string }> = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const s of started.splice(0)) {
    await Promise.race([s.run.stop('SIGTERM'), new Promise((r) => setTimeout(r, 10_000))]);
    killMarked(s.marker);
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function job(extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'zr-elastic-'));
  dirs.push(dir);
  const port = 20000 + Math.floor(Math.random() * 30000);
  const token = randomBytes(16).toString('hex');
  const node = (rank: number, env: Record<string, string> = {}) => {
    const marker = newMarker();
    const args = ['launch', '--nproc-per-node', '1', '--node-rank', String(rank), '--master-addr', '127.0.0.1'];
    const run = startCli([...args, '--master-port', String(port), ...extra, fixture('elastic-worker.mjs')], {
      env: { ZERORING_TOKEN: token, RECORD_DIR: dir, STEP_MS: '100', ...env },
      marker,
    });
    started.push({ run, marker });
    return { run, marker };
  };
  const records = (): WorkerRecord[] => {
    const f = join(dir, 'records.jsonl');
    if (!existsSync(f)) return [];
    return readFileSync(f, 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as WorkerRecord);
  };
  const waitRecords = async (pred: (rs: WorkerRecord[]) => boolean, what: string, runs: StartedCli[]) => {
    const end = Date.now() + 120_000;
    while (!pred(records())) {
      const ended = runs.find((r) => r.child.exitCode !== null);
      if (ended || Date.now() > end) {
        throw new Error(`no ${what}: ${JSON.stringify(records())}\n${runs.map((r) => r.output()).join('\n---\n')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return { dir, node, records, waitRecords };
}

const startsOf = (rs: WorkerRecord[], round: number) =>
  rs.filter((r) => r.round === round && !r.finished).sort((a, b) => a.rank - b.rank);

describe('zeroring launch --nnodes MIN:MAX (elastic, loopback)', () => {
  it('kill -9 of a node mid-round: the two others re-form at world size 2 and finish', async () => {
    const j = job(['--nnodes', '2:3', '--max-restarts', '1', '--rdzv-window', '3']);
    const env = { STEPS: '60' };
    const nodes = [j.node(0, env), j.node(1, env), j.node(2, env)];
    const runs = nodes.map((n) => n.run);
    await j.waitRecords((rs) => startsOf(rs, 0).length === 3, 'round 0 of 3 ranks', runs);
    expect(startsOf(j.records(), 0).map((r) => [r.rank, r.worldSize, r.sum])).toEqual([
      [0, 3, 3],
      [1, 3, 3],
      [2, 3, 3],
    ]);
    // Node 2 is lost whole: its launcher and its worker at once.
    expect(killMarked(nodes[2]!.marker)).toBe(2);
    const codes = await Promise.all([runs[0]!.exited, runs[1]!.exited]);
    const text = runs.map((r, i) => `--- node ${i}\n${r.output()}`).join('\n');
    expect(codes, text).toEqual([0, 0]);
    const rs = j.records();
    expect(startsOf(rs, 1).map((r) => [r.rank, r.worldSize, r.env, r.sum])).toEqual([
      [0, 2, 2, 2],
      [1, 2, 2, 2],
    ]);
    expect(rs.filter((r) => r.finished).map((r) => [r.round, r.worldSize])).toEqual([
      [1, 2],
      [1, 2],
    ]);
    // Node ranks follow the order the launchers joined in: name the lost one as it was told.
    const lost = /round 0: world size 3 on 3 nodes; this is (node \d \(host 127\.0\.0\.1, rank \d\))/.exec(
      runs[2]!.output(),
    )![1]!;
    for (const r of runs.slice(0, 2)) {
      expect(r.output(), text).toContain(`round 1: world size 2 on 2 nodes (was 3); left: ${lost}`);
    }
    expect(runs[0]!.output()).toMatch(/round 0 ended: .*; re-forming the world for round 1/);
    for (const n of nodes) expect(await leftovers(n.marker)).toEqual([]);
  }, 180_000);

  it('a launcher started while a round runs joins at the next re-formation: the world grows', async () => {
    const j = job(['--nnodes', '2:3', '--max-restarts', '1', '--rdzv-window', '1']);
    const fail = join(j.dir, 'fail');
    const env = { STEPS0: '3000', STEPS: '30', FAIL_RANK: '1', FAIL_FILE: fail };
    const first = [j.node(0, env), j.node(1, env)];
    await j.waitRecords((rs) => startsOf(rs, 0).length === 2, 'round 0 of 2 ranks', [first[0]!.run, first[1]!.run]);
    const late = j.node(2, env);
    await late.run.line(/this node joins at the next re-formation/);
    // The running round went on without it; now it fails, and the next round takes the newcomer.
    writeFileSync(fail, '');
    const runs = [...first, late].map((n) => n.run);
    const codes = await Promise.all(runs.map((r) => r.exited));
    const text = runs.map((r, i) => `--- node ${i}\n${r.output()}`).join('\n');
    expect(codes, text).toEqual([0, 0, 0]);
    const rs = j.records();
    expect(startsOf(rs, 0).map((r) => r.worldSize)).toEqual([2, 2]);
    expect(startsOf(rs, 1).map((r) => [r.rank, r.worldSize, r.sum])).toEqual([
      [0, 3, 3],
      [1, 3, 3],
      [2, 3, 3],
    ]);
    expect(runs[0]!.output(), text).toMatch(
      /round 1: world size 3 on 3 nodes \(was 2\); joined: node 2 \(host 127\.0\.0\.1, rank 2\)/,
    );
    expect(late.run.output(), text).toMatch(/round 1: world size 3 on 3 nodes; this is node 2/);
    for (const n of [...first, late]) expect(await leftovers(n.marker)).toEqual([]);
  }, 180_000);

  it('fewer than MIN nodes: a ConfigError line at the rendezvous timeout; another token is refused', async () => {
    const j = job(['--nnodes', '2:3', '--rdzv-timeout', '4']);
    const t0 = Date.now();
    const alone = j.node(0);
    await alone.run.line(/hosts the agent store/);
    const stranger = j.node(1, { ZERORING_TOKEN: 'not-the-job-token' });
    const [code, strangerCode] = await Promise.all([alone.run.exited, stranger.run.exited]);
    const ms = Date.now() - t0;
    expect(code, alone.run.output()).toBe(2);
    const tooFew = /zeroring launch: fewer than 2 nodes \(the --nnodes minimum\) joined round 0 of the rendezvous/;
    expect(alone.run.output()).toMatch(tooFew);
    expect(alone.run.output()).toMatch(/at 127\.0\.0\.1 within 4 s \(expected at least 2 launchers/);
    expect(strangerCode, stranger.run.output()).not.toBe(0);
    expect(stranger.run.output()).toMatch(/AuthError|token/);
    expect(stranger.run.output()).not.toContain('not-the-job-token');
    expect(ms).toBeLessThan(60_000);
    expect(j.records()).toEqual([]);
    for (const n of [alone, stranger]) expect(await leftovers(n.marker)).toEqual([]);
  }, 120_000);
});
