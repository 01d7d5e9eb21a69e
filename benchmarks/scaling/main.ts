// Training scaling: total tokens/s of the toy GPT with 1, 2 and 4 ranks (LocalStrategy for one,
// DDP for more; per-rank batch fixed, so N ranks process N times the tokens per step), and the
// share of each step spent waiting on communication (commMs / stepMs: what finishStep waited
// for after backward, plus nothing else). Beside N-rank DDP it runs the host's ceiling for N
// processes: N independent one-rank jobs at once (no process group, nothing shared), whose summed
// tokens/s is what N ranks would reach if DDP cost nothing. "of ceiling" (DDP over that, same
// round) is therefore what DDP itself costs, apart from what the machine costs any N processes
// sharing it (the same idea as the collectives' raw-TCP pump ceiling). With --lockstep it also
// runs N ranks that train alone but meet at a barrier before every update (worker.ts):
// between the ceiling and DDP, it separates what waiting for the slowest rank each step costs
// (any synchronous data parallelism pays it) from what DDP's gradient traffic and copies add.
//
//   node --import tsx benchmarks/scaling/main.ts [--models tiny,small] [--nprocs 1,2,4] [--backend wasm]
//        [--rounds R] [--rounds-small R] [--nprocs-small 1,2] [--steps-tiny 60] [--steps-small 6]
//        [--warmup-tiny W] [--warmup-small W]
//        [--batch-tiny 16] [--batch-small 8] (per-rank windows per step)
//        [--out benchmarks/results/scaling-<models>-<machine>.json] (e.g. scaling-tiny-2vcpu.json)
//        [--ceiling 2] (world sizes to also run as independent one-rank jobs; '' for none)
//        [--balance] (each DDP world size also with the step's windows balanced across ranks by measured speed)
//        [--lockstep] (each ceiling world size also as ranks that only meet at a barrier each step)
//        [--bucket-bytes B] [--first-bucket-bytes B] [--node-args=--v8-flag]
//        [--worker FILE] [--data FILE] (another worker script, another text than Moby Dick)
//        [--no-charts] [--no-cpu-balance] (skip the SVG charts, skip the CPU balance probe)
//
// Each configuration runs as its own job through launch() (worker.ts); within
// a round the world sizes run back to back, and speedups are taken within a round so that the
// shared machine's load drifts as little as possible between the runs compared. Medians over
// steps after the warm-up (the first steps compile kernels and fill allocator pools).
// On a 2-core machine 2 ranks need each rank single-threaded: the wasm backend is (no threads),
// and 4 ranks oversubscribe the cores (shown for completeness).
// Writes JSON, a Markdown table beside it and an SVG chart (one per model, -<model>.svg, when
// several models run).
import os from 'node:os';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { defaultWarmup, runScalingJob, type ScalingResult } from './job.ts';

const here = dirname(fileURLToPath(import.meta.url));
const a = benchArgs(import.meta.url, {
  models: { type: 'string', default: 'tiny,small' },
  nprocs: { type: 'string', default: '1,2,4' },
  'nprocs-small': { type: 'string' }, // e.g. 1,2 when 4 oversubscribed ranks of small take too long
  backend: { type: 'string', default: 'wasm' },
  rounds: { type: 'string', default: '1' },
  'rounds-small': { type: 'string' },
  'steps-tiny': { type: 'string', default: '60' },
  'steps-small': { type: 'string', default: '6' },
  'warmup-tiny': { type: 'string' }, // steps dropped before the medians; default defaultWarmup (a third of the steps)
  'warmup-small': { type: 'string' },
  'batch-tiny': { type: 'string', default: '16' },
  'batch-small': { type: 'string', default: '8' },
  worker: { type: 'string', default: resolve(here, 'worker.ts') },
  data: { type: 'string' },
  'bucket-bytes': { type: 'string' },
  'node-args': { type: 'string' }, // e.g. "--single-threaded-gc", for every worker of every configuration
  'first-bucket-bytes': { type: 'string' },
  out: { type: 'string' },
  'no-charts': { type: 'boolean', default: false },
  'no-cpu-balance': { type: 'boolean', default: false }, // a bundle cannot start the probe (it runs under tsx)
  ceiling: { type: 'string', default: '2' },
  // also run each DDP world size with --balance (the trainer's balanceBatch)
  balance: { type: 'boolean', default: false },
  // also run each ceiling world size as ranks meeting at a barrier each step
  lockstep: { type: 'boolean', default: false },
});

type Model = 'tiny' | 'small';
const models = a.models!.split(',') as Model[];
const outFile = a.out ?? resultPath(`scaling-${models.join('-')}`);
const nprocs = a.nprocs!.split(',').map(Number);
const nprocsOf = (m: Model): number[] =>
  m === 'small' && a['nprocs-small'] ? a['nprocs-small'].split(',').map(Number) : nprocs;
const ceilingOf = new Set(a.ceiling!.split(',').filter(Boolean).map(Number));
const rounds = Number(a.rounds);
const stepsOf = { tiny: Number(a['steps-tiny']), small: Number(a['steps-small']) };
const batchOf = { tiny: Number(a['batch-tiny']), small: Number(a['batch-small']) };
/** Steps dropped before taking medians, per model. */
const warmupOf = {
  tiny: a['warmup-tiny'] ? Number(a['warmup-tiny']) : defaultWarmup(stepsOf.tiny),
  small: a['warmup-small'] ? Number(a['warmup-small']) : defaultWarmup(stepsOf.small),
};
for (const m of ['tiny', 'small'] as const) {
  if (!(warmupOf[m] >= 0 && warmupOf[m] <= stepsOf[m] - 2))
    throw new Error(`--warmup-${m} ${warmupOf[m]} must leave at least 2 of the ${stepsOf[m]} steps to measure`);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function runOne(model: Model, nproc: number, balance = false, lockstep = false): Promise<ScalingResult> {
  return runScalingJob({
    nproc,
    worker: a.worker,
    label: `${model} with ${nproc} rank(s)`,
    args: {
      model,
      batch: batchOf[model],
      steps: stepsOf[model],
      backend: a.backend,
      seed: 1,
      data: a.data,
      bucketBytes: a['bucket-bytes'] ? Number(a['bucket-bytes']) : undefined,
      firstBucketBytes: a['first-bucket-bytes'] ? Number(a['first-bucket-bytes']) : undefined,
      balance,
      lockstep,
    },
    nodeArgs: a['node-args'] ? a['node-args'].split(' ').filter(Boolean) : [],
  });
}

/**
 * local: one process alone; ddp: nproc ranks of one job; ddp-balanced: the same with each step's
 * windows split across ranks by measured speed (--balance); lockstep: nproc ranks training alone
 * that wait for each other at a barrier before every update (--lockstep; no gradients sent);
 * independent: nproc one-rank jobs at the same time (the ceiling), their tokens/s summed and their
 * step figures those of the first job.
 */
type Mode = 'local' | 'ddp' | 'ddp-balanced' | 'lockstep' | 'independent';
/** The modes measured against the same round's ceiling. */
const underCeiling = (mode: Mode): boolean => mode === 'ddp' || mode === 'ddp-balanced' || mode === 'lockstep';

interface Row {
  model: Model;
  nproc: number;
  mode: Mode;
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
  /**
   * The part of the step no rank hid: the least any rank waited (0 with one rank). The rest of
   * commFraction is waiting for a slower rank.
   */
  exposedFraction: number;
  /** Rank 0's process CPU time per step over wall time: ~1 when it had a core to itself. */
  cpuPerWall: number;
  /** Slowest minus fastest rank's compute ms in a step: the part of the comm wait that is waiting for a peer. */
  rankSkewMs: number;
  /**
   * Slower over faster CPU right before the round (cpu-balance.ts): 2 ranks go at the slower
   * one's pace, so a round with an unbalanced machine measures the host, not DDP.
   */
  cpuBalance: number | null;
  /** DDP (either kind) and lockstep rows: tokens/s over the same round's independent jobs (1.00: costs nothing). */
  ofCeiling?: number;
  stepsMeasured: number;
}

/**
 * What one round of `model` runs, in order: the ceiling right after DDP, so that the two see the
 * machine in the same state.
 */
function configsOf(model: Model): [number, Mode][] {
  return nprocsOf(model).flatMap((nproc): [number, Mode][] => {
    if (nproc === 1) return [[1, 'local']];
    const ddps: [number, Mode][] = a.balance
      ? [
          [nproc, 'ddp'],
          [nproc, 'ddp-balanced'],
        ]
      : [[nproc, 'ddp']];
    if (!ceilingOf.has(nproc)) return ddps;
    return [...ddps, ...(a.lockstep ? [[nproc, 'lockstep'] as [number, Mode]] : []), [nproc, 'independent']];
  });
}

/** The runs of one configuration: one job, or `nproc` independent one-rank jobs started together. */
async function runConfig(model: Model, nproc: number, mode: Mode): Promise<ScalingResult[]> {
  if (mode !== 'independent') return [await runOne(model, nproc, mode === 'ddp-balanced', mode === 'lockstep')];
  return Promise.all(Array.from({ length: nproc }, () => runOne(model, 1)));
}

function toRow(
  model: Model,
  nproc: number,
  mode: Mode,
  round: number,
  cpuBalance: number | null,
  results: ScalingResult[],
): Row {
  const keptOf = (r: ScalingResult) => r.steps.slice(warmupOf[model]);
  const kept = keptOf(results[0]!);
  return {
    model,
    nproc,
    mode,
    round,
    batchPerRank: batchOf[model],
    params: results[0]!.params,
    buckets: results[0]!.buckets,
    tokensPerSec: results.reduce((sum, r) => sum + median(keptOf(r).map((s) => s.tokensPerSec)), 0),
    speedup: 0,
    stepMs: median(kept.map((s) => s.stepMs)),
    computeMs: median(kept.map((s) => s.computeMs)),
    commMs: median(kept.map((s) => s.commMs)),
    optimMs: median(kept.map((s) => s.optimMs)),
    commFraction: median(kept.map((s) => s.commMs / s.stepMs)),
    exposedFraction: median(kept.map((s) => (s.commExposedMs ?? 0) / s.stepMs)),
    cpuPerWall: median(kept.flatMap((s) => (s.cpuMs === null ? [] : [s.cpuMs / s.stepMs]))),
    rankSkewMs: median(
      kept.map((s) => (s.rankComputeMs ? Math.max(...s.rankComputeMs) - Math.min(...s.rankComputeMs) : 0)),
    ),
    cpuBalance,
    stepsMeasured: kept.length,
  };
}

const rows: Row[] = [];
let backendName = a.backend!;
for (const model of models) {
  const roundsOf = model === 'small' && a['rounds-small'] ? Number(a['rounds-small']) : rounds;
  for (let round = 0; round < roundsOf; round++) {
    let base: number | undefined;
    // Loaded only when used: cpu-balance.ts is also a script, and inside a one-file bundle of this
    // one (benchmarks/scaling/README.md) its "run as a script" check would see this file's name.
    const probe = a['no-cpu-balance'] ? null : await import('./cpu-balance.ts');
    const cpuBalance = probe ? (await probe.measureCpuBalance(2)).ratio : null;
    for (const [nproc, mode] of configsOf(model)) {
      const t0 = Date.now();
      const results = await runConfig(model, nproc, mode);
      backendName = results[0]!.backend;
      const row = toRow(model, nproc, mode, round, cpuBalance, results);
      base ??= row.tokensPerSec;
      row.speedup = row.tokensPerSec / base;
      let ceiling = '';
      if (mode === 'independent') {
        const compared = rows.filter(
          (r) => r.model === model && r.round === round && r.nproc === nproc && underCeiling(r.mode),
        );
        for (const r of compared) r.ofCeiling = r.tokensPerSec / row.tokensPerSec;
        ceiling = `, ${compared.map((r) => `${r.mode} at ${r.ofCeiling!.toFixed(2)}`).join(', ')} of it`;
      }
      rows.push(row);
      // Partial results survive a run cut short (e.g. a time limit on a borrowed machine).
      mkdirSync(dirname(outFile), { recursive: true });
      writeFileSync(outFile.replace(/\.json$/, '.partial.json'), JSON.stringify(rows, null, 2) + '\n');
      console.error(
        `${model} nproc=${nproc} ${mode} round ${round}: ${row.tokensPerSec.toFixed(0)} tok/s, ` +
          `x${row.speedup.toFixed(2)}, comm ${(100 * row.commFraction).toFixed(1)}%${ceiling}, CPU ` +
          `balance ${cpuBalance?.toFixed(2) ?? '-'} (${((Date.now() - t0) / 1000).toFixed(0)} s)`,
      );
    }
  }
}

// Summary per (model, nproc, mode): medians over rounds.
const summary = [];
for (const model of models) {
  for (const [nproc, mode] of configsOf(model)) {
    const rs = rows.filter((r) => r.model === model && r.nproc === nproc && r.mode === mode);
    const ofCeiling = rs.flatMap((r) => (r.ofCeiling === undefined ? [] : [r.ofCeiling]));
    summary.push({
      model,
      nproc,
      mode,
      tokensPerSec: median(rs.map((r) => r.tokensPerSec)),
      speedup: median(rs.map((r) => r.speedup)),
      commFraction: median(rs.map((r) => r.commFraction)),
      exposedFraction: median(rs.map((r) => r.exposedFraction)),
      stepMs: median(rs.map((r) => r.stepMs)),
      computeMs: median(rs.map((r) => r.computeMs)),
      commMs: median(rs.map((r) => r.commMs)),
      optimMs: median(rs.map((r) => r.optimMs)),
      cpuPerWall: median(rs.map((r) => r.cpuPerWall)),
      rankSkewMs: median(rs.map((r) => r.rankSkewMs)),
      cpuBalance: rs.every((r) => r.cpuBalance !== null) ? median(rs.map((r) => r.cpuBalance!)) : null,
      ofCeiling: ofCeiling.length > 0 ? median(ofCeiling) : null,
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
  warmup: warmupOf,
  results: summary,
  runs: rows,
};
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, JSON.stringify(out, null, 2) + '\n');
rmSync(outFile.replace(/\.json$/, '.partial.json'), { force: true });

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const header =
  '| model | ranks | batch/rank | tokens/s (all ranks) | × 1 rank | of ' +
  'ceiling | step ms | compute ms | comm wait ms | optim ms | comm wait ' +
  'share | of it exposed | rank skew ms | CPU balance | rank-0 CPU/wall |';
const lines = [header, '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|'];
const labels: Partial<Record<Mode, string>> = {
  independent: 'independent (ceiling)',
  'ddp-balanced': 'balanced',
  lockstep: 'lockstep (barrier, no gradients)',
};
const ranksLabel = (nproc: number, mode: Mode) => (labels[mode] ? `${nproc} ${labels[mode]}` : String(nproc));
for (const s of summary) {
  lines.push(
    `| ${s.model} | ${ranksLabel(s.nproc, s.mode)} | ${s.batchPerRank} | ` +
      `${s.tokensPerSec.toFixed(0)} | ${s.speedup.toFixed(2)} | ${s.ofCeiling?.toFixed(2) ?? ''} | ` +
      `${s.stepMs.toFixed(0)} | ${s.computeMs.toFixed(0)} | ${s.commMs.toFixed(1)} | ` +
      `${s.optimMs.toFixed(0)} | ${pct(s.commFraction)} | ${pct(s.exposedFraction)} | ` +
      `${s.rankSkewMs.toFixed(1)} | ${s.cpuBalance?.toFixed(2) ?? '-'} | ${s.cpuPerWall.toFixed(2)} |`,
  );
}
const loadAtEnd = out.machine.loadavgAtEnd.map((x) => x.toFixed(1)).join(' ');
const warmups = models.map((m) => `${m}: ${warmupOf[m]} of ${stepsOf[m]}`).join(', ');
const md =
  `# Training scaling (${out.date})\n\nBackend ${backendName}; ${out.machine.cpus} CPUs ` +
  `(${out.machine.cpuModel}); load average at the end ${loadAtEnd}; ` +
  `medians over steps after warm-up (${warmups}), ` +
  `${rounds} round(s). CPU balance: slower over faster of ` +
  'two processes running the same JavaScript attention forward at once, before each round (1.00: ' +
  'equal CPUs; cpu-balance.ts). Ceiling: N independent one-rank jobs at once (no communication); ' +
  `"of ceiling" is DDP's tokens/s over theirs in the same round, the median over rounds. ` +
  'Lockstep: ranks that train alone but wait for each other before every update, no gradients ' +
  'sent (what synchronising alone costs; its comm wait is the barrier wait). "of it exposed": ' +
  'the least any rank waited, as a share of the step (the traffic that no rank hid behind its ' +
  `backward); the rest of the comm wait is waiting for a slower rank.\n\n${lines.join('\n')}\n`;
writeFileSync(outFile.replace(/\.json$/, '.md'), md);
console.log(md);

if (!a['no-charts']) {
  try {
    // Loaded only when charts are wanted, through a specifier in a variable, so that a bundle of
    // this script for a bare machine can leave the charts (and vega) out.
    const chartsModule = '../common/charts/scaling.ts';
    const { writeScalingChart } = (await import(chartsModule)) as typeof import('../common/charts/scaling.ts');
    for (const model of models) {
      const file = outFile.replace(/\.json$/, models.length > 1 ? `-${model}.svg` : '.svg');
      await writeScalingChart(
        {
          model,
          backend: backendName,
          results: summary
            .filter((s) => s.model === model && (s.mode === 'local' || s.mode === 'ddp'))
            .map((s) => ({ nproc: s.nproc, tokensPerSec: s.tokensPerSec, strategy: 'ddp' })),
        },
        file,
        `GPT ${model}: training tokens/s vs ranks`,
      );
      console.error(`chart: ${file}`);
    }
  } catch (err) {
    console.error(`charts skipped: ${(err as Error).message}`);
  }
}
