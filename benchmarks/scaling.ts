// Training scaling: total tokens/s of the toy GPT with 1, 2 and 4 ranks (LocalStrategy for one,
// DDP for more; per-rank batch fixed, so N ranks process N times the tokens per step), and the
// share of each step spent waiting on communication (commMs / stepMs: what finishStep waited
// for after backward, plus nothing else).
//
//   node --import tsx benchmarks/scaling.ts [--models tiny,small] [--nprocs 1,2,4] [--backend wasm]
//        [--rounds R] [--rounds-small R] [--nprocs-small 1,2] [--steps-tiny 16] [--steps-small 6] [--out benchmarks/results/scaling.json]
//        [--bucket-bytes B] [--first-bucket-bytes B] [--node-args=--v8-flag] [--worker FILE --data FILE --no-charts --no-cpu-balance]   (the bundled form: benchmarks/scaling-device-pack.sh)
//
// Each configuration runs as its own job through launch() (benchmarks/scaling-worker.ts); within
// a round the world sizes run back to back, and speedups are taken within a round so that the
// shared machine's load drifts as little as possible between the runs compared. Medians over
// steps after the warm-up (the first steps compile kernels and fill allocator pools).
// On a 2-core machine 2 ranks need each rank single-threaded: the wasm backend is (no threads),
// and 4 ranks oversubscribe the cores (shown for completeness).
// Writes JSON, a Markdown table beside it and one SVG chart per model.
import os from 'node:os';
import { Writable } from 'node:stream';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { launch } from '../packages/comm/src/launch/index.ts';
import { measureCpuBalance } from './cpu-balance.ts';
// Type only (erased): the worker module itself starts a process group when loaded.
import type { StepRecord } from './scaling-worker.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values: a } = parseArgs({
  options: {
    models: { type: 'string', default: 'tiny,small' },
    nprocs: { type: 'string', default: '1,2,4' },
    'nprocs-small': { type: 'string' }, // e.g. 1,2 when 4 oversubscribed ranks of small take too long
    backend: { type: 'string', default: 'wasm' },
    rounds: { type: 'string', default: '1' },
    'rounds-small': { type: 'string' },
    'steps-tiny': { type: 'string', default: '16' },
    'steps-small': { type: 'string', default: '6' },
    'batch-tiny': { type: 'string', default: '16' },
    'batch-small': { type: 'string', default: '8' },
    worker: { type: 'string', default: resolve(here, 'scaling-worker.ts') },
    data: { type: 'string' },
    'bucket-bytes': { type: 'string' },
    'node-args': { type: 'string' }, // e.g. "--single-threaded-gc", for every worker of every configuration
    'first-bucket-bytes': { type: 'string' },
    out: { type: 'string', default: resolve(here, 'results/scaling.json') },
    'no-charts': { type: 'boolean', default: false },
    'no-cpu-balance': { type: 'boolean', default: false }, // the bundled form cannot start the probe (it needs tsx)
  },
});

type Model = 'tiny' | 'small';
const models = a.models!.split(',') as Model[];
const nprocs = a.nprocs!.split(',').map(Number);
const nprocsOf = (m: Model): number[] => (m === 'small' && a['nprocs-small'] ? a['nprocs-small'].split(',').map(Number) : nprocs);
const rounds = Number(a.rounds);
const stepsOf = { tiny: Number(a['steps-tiny']), small: Number(a['steps-small']) };
const batchOf = { tiny: Number(a['batch-tiny']), small: Number(a['batch-small']) };
/** Steps dropped before taking medians. */
const warmupOf = (steps: number) => Math.min(steps - 2, Math.max(2, Math.floor(steps / 4)));

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function runOne(model: Model, nproc: number): Promise<{ steps: StepRecord[]; buckets: number; params: number; backend: string }> {
  const stdout = new Collect();
  const stderr = new Collect();
  const result = await launch({
    nprocPerNode: nproc,
    script: a.worker!,
    args: [JSON.stringify({ model, batch: batchOf[model], steps: stepsOf[model], backend: a.backend, seed: 1, data: a.data, bucketBytes: a['bucket-bytes'] ? Number(a['bucket-bytes']) : undefined, firstBucketBytes: a['first-bucket-bytes'] ? Number(a['first-bucket-bytes']) : undefined })],
    stdout,
    stderr,
    nodeArgs: a['node-args'] ? a['node-args'].split(' ').filter(Boolean) : [],
    forwardSignals: true,
    env: { ZERORING_LOG_LEVEL: 'warn' },
  });
  if (result.exitCode !== 0) throw new Error(`${model} with ${nproc} rank(s) failed (exit ${result.exitCode}):\n${stderr.text.slice(-4000)}`);
  const line = stdout.text.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`${model} with ${nproc} rank(s) printed no RESULT line:\n${stdout.text.slice(-2000)}`);
  return JSON.parse(line.slice(line.indexOf('RESULT ') + 7));
}

interface Row {
  model: Model;
  nproc: number;
  round: number;
  batchPerRank: number;
  params: number;
  buckets: number;
  tokensPerSec: number;
  speedup: number;
  stepMs: number;
  computeMs: number;
  commMs: number;
  optimMs: number;
  commFraction: number;
  /** Rank 0's process CPU time per step over wall time: ~1 when it had a core to itself. */
  cpuPerWall: number;
  /** Slowest minus fastest rank's compute ms in a step: the part of the comm wait that is waiting for a peer. */
  rankSkewMs: number;
  /**
   * Slower over faster CPU right before the round (cpu-balance.ts): 2 ranks go at the slower
   * one's pace, so a round with an unbalanced machine measures the host, not DDP.
   */
  cpuBalance: number | null;
  stepsMeasured: number;
}

const rows: Row[] = [];
let backendName = a.backend!;
for (const model of models) {
  const roundsOf = model === 'small' && a['rounds-small'] ? Number(a['rounds-small']) : rounds;
  for (let round = 0; round < roundsOf; round++) {
    const base: Record<number, number> = {};
    const cpuBalance = a['no-cpu-balance'] ? null : (await measureCpuBalance(2)).ratio;
    for (const nproc of nprocsOf(model)) {
      const t0 = Date.now();
      const r = await runOne(model, nproc);
      backendName = r.backend;
      const kept = r.steps.slice(warmupOf(r.steps.length));
      const row: Row = {
        model,
        nproc,
        round,
        batchPerRank: batchOf[model],
        params: r.params,
        buckets: r.buckets,
        tokensPerSec: median(kept.map((s) => s.tokensPerSec)),
        speedup: 0,
        stepMs: median(kept.map((s) => s.stepMs)),
        computeMs: median(kept.map((s) => s.computeMs)),
        commMs: median(kept.map((s) => s.commMs)),
        optimMs: median(kept.map((s) => s.optimMs)),
        commFraction: median(kept.map((s) => s.commMs / s.stepMs)),
        cpuPerWall: median(kept.flatMap((s) => (s.cpuMs === null ? [] : [s.cpuMs / s.stepMs]))),
        rankSkewMs: median(kept.map((s) => (s.rankComputeMs ? Math.max(...s.rankComputeMs) - Math.min(...s.rankComputeMs) : 0))),
        cpuBalance,
        stepsMeasured: kept.length,
      };
      base[nproc] = row.tokensPerSec;
      row.speedup = row.tokensPerSec / (base[nprocsOf(model)[0]] ?? row.tokensPerSec);
      rows.push(row);
      // Partial results survive a run cut short (e.g. a time limit on a borrowed machine).
      mkdirSync(dirname(a.out!), { recursive: true });
      writeFileSync(a.out!.replace(/\.json$/, '.partial.json'), JSON.stringify(rows, null, 2) + '\n');
      console.error(`${model} nproc=${nproc} round ${round}: ${row.tokensPerSec.toFixed(0)} tok/s, x${row.speedup.toFixed(2)}, comm ${(100 * row.commFraction).toFixed(1)}%, CPU balance ${cpuBalance?.toFixed(2) ?? '-'} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    }
  }
}

// Summary per (model, nproc): medians over rounds.
const summary = [];
for (const model of models) {
  for (const nproc of nprocsOf(model)) {
    const rs = rows.filter((r) => r.model === model && r.nproc === nproc);
    summary.push({
      model,
      nproc,
      tokensPerSec: median(rs.map((r) => r.tokensPerSec)),
      speedup: median(rs.map((r) => r.speedup)),
      commFraction: median(rs.map((r) => r.commFraction)),
      stepMs: median(rs.map((r) => r.stepMs)),
      computeMs: median(rs.map((r) => r.computeMs)),
      commMs: median(rs.map((r) => r.commMs)),
      optimMs: median(rs.map((r) => r.optimMs)),
      cpuPerWall: median(rs.map((r) => r.cpuPerWall)),
      rankSkewMs: median(rs.map((r) => r.rankSkewMs)),
      cpuBalance: rs.every((r) => r.cpuBalance !== null) ? median(rs.map((r) => r.cpuBalance!)) : null,
      buckets: rs[0].buckets,
      params: rs[0].params,
      batchPerRank: rs[0].batchPerRank,
    });
  }
}

const out = {
  benchmark: 'training scaling (tokens/s of all ranks, DDP for >1 rank)',
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, loadavgAtEnd: os.loadavg(), node: process.version },
  backend: backendName,
  rounds,
  steps: stepsOf,
  results: summary,
  runs: rows,
};
mkdirSync(dirname(a.out!), { recursive: true });
writeFileSync(a.out!, JSON.stringify(out, null, 2) + '\n');
rmSync(a.out!.replace(/\.json$/, '.partial.json'), { force: true });

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const header = '| model | ranks | batch/rank | tokens/s (all ranks) | × 1 rank | step ms | compute ms | comm wait ms | optim ms | comm wait share | rank skew ms | CPU balance | rank-0 CPU/wall |';
const lines = [header, '|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
for (const s of summary) {
  lines.push(`| ${s.model} | ${s.nproc} | ${s.batchPerRank} | ${s.tokensPerSec.toFixed(0)} | ${s.speedup.toFixed(2)} | ${s.stepMs.toFixed(0)} | ${s.computeMs.toFixed(0)} | ${s.commMs.toFixed(1)} | ${s.optimMs.toFixed(0)} | ${pct(s.commFraction)} | ${s.rankSkewMs.toFixed(1)} | ${s.cpuBalance?.toFixed(2) ?? '-'} | ${s.cpuPerWall.toFixed(2)} |`);
}
const md = `# Training scaling (${out.date})\n\nBackend ${backendName}; ${out.machine.cpus} CPUs (${out.machine.cpuModel}); load average at the end ${out.machine.loadavgAtEnd.map((x) => x.toFixed(1)).join(' ')}; medians over steps after warm-up, ${rounds} round(s). CPU balance: slower over faster of two processes running the same JavaScript attention forward at once, before each round (1.00: equal CPUs; cpu-balance.ts).\n\n${lines.join('\n')}\n`;
writeFileSync(a.out!.replace(/\.json$/, '.md'), md);
console.log(md);

if (!a['no-charts']) {
  try {
    // A specifier in a variable: bundlers leave it alone (the device bundle has no charts).
    const chartsModule = '../packages/cli/src/charts/scaling.ts';
    const { writeScalingChart } = (await import(chartsModule)) as typeof import('../packages/cli/src/charts/scaling.ts');
    for (const model of models) {
      const file = a.out!.replace(/\.json$/, `-${model}.svg`);
      await writeScalingChart({ model, backend: backendName, results: summary.filter((s) => s.model === model).map((s) => ({ nproc: s.nproc, tokensPerSec: s.tokensPerSec, strategy: 'ddp' })) }, file, `GPT ${model}: training tokens/s vs ranks`);
      console.error(`chart: ${file}`);
    }
  } catch (err) {
    console.error(`charts skipped: ${(err as Error).message}`);
  }
}
