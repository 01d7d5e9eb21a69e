// Ranks of unequal speed: the tiny GPT with 2 DDP ranks where rank 1's CPU is shared with a
// process that spins (so rank 1 runs at about half speed) and rank 0 has a CPU to itself, as on
// two unequal machines. Even split (every rank 16 windows) against `--balance` (the trainer
// moves windows toward the faster rank, batch-balance.ts), alternating within each round so
// both see the machine in the same state; medians over steps after the warm-up, then over rounds.
//
//   node --import tsx benchmarks/scaling/balance.ts [--rounds 3] [--steps 40] [--warmup 10]
//        [--out benchmarks/results/balance-<machine>.json]
//
// Needs 2 CPUs and `taskset` (util-linux). Writes JSON (by default balance-2vcpu.json on a 2-CPU
// machine) and a Markdown table beside it.
import os from 'node:os';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { median } from '@zeroring/train';
import { runScalingJob } from './job.ts';

const a = benchArgs(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  steps: { type: 'string', default: '40' },
  warmup: { type: 'string', default: '10' },
  out: { type: 'string', default: resultPath('balance') },
});
const [rounds, steps, warmup] = [Number(a.rounds), Number(a.steps), Number(a.warmup)];
if (os.cpus().length < 2) throw new Error(`balance.ts needs 2 CPUs, this machine has ${os.cpus().length}`);

interface Row {
  round: number;
  balance: boolean;
  tokensPerSec: number;
  stepMs: number;
  commMs: number;
  /** Median per-rank compute ms (rank 0 alone on its CPU, rank 1 sharing). */
  rankComputeMs: number[];
  /** The split most steps used. */
  commonSplit: string;
}

async function runPair(balance: boolean, round: number): Promise<Row> {
  // The competitor for rank 1's CPU: a spinning process pinned to CPU 1 for the whole run.
  const hog = spawn('taskset', ['-c', '1', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
  try {
    const r = await runScalingJob({
      nproc: 2,
      label: `2 ranks (balance ${balance})`,
      args: { model: 'tiny', batch: 16, steps, backend: 'wasm', seed: 1, balance, pin: true },
    });
    const kept = r.steps.slice(warmup);
    const splits = new Map<string, number>();
    for (const s of kept) {
      const key = String(s.batchSplit ?? [16, 16]);
      splits.set(key, (splits.get(key) ?? 0) + 1);
    }
    return {
      round,
      balance,
      tokensPerSec: median(kept.map((s) => s.tokensPerSec)),
      stepMs: median(kept.map((s) => s.stepMs)),
      commMs: median(kept.map((s) => s.commMs)),
      rankComputeMs: [0, 1].map((r) => median(kept.map((s) => s.rankComputeMs?.[r] ?? 0))),
      commonSplit: [...splits].sort((x, y) => y[1] - x[1])[0]![0],
    };
  } finally {
    hog.kill('SIGKILL');
  }
}

const rows: Row[] = [];
for (let round = 0; round < rounds; round++) {
  // ABBA over rounds: neither variant always runs first.
  for (const balance of round % 2 ? [true, false] : [false, true]) {
    const row = await runPair(balance, round);
    rows.push(row);
    console.error(
      `round ${round} ${balance ? 'balanced' : 'even'}: ${row.tokensPerSec.toFixed(0)} ` +
        `tok/s, comm wait ${row.commMs.toFixed(1)} ms, rank compute ` +
        `${row.rankComputeMs.map((x) => x.toFixed(0)).join(' / ')} ms, split ${row.commonSplit}`,
    );
  }
}

const gains = [...Array(rounds).keys()].map(
  (round) =>
    rows.find((r) => r.round === round && r.balance)!.tokensPerSec /
    rows.find((r) => r.round === round && !r.balance)!.tokensPerSec,
);
const summary = [false, true].map((balance) => {
  const rs = rows.filter((r) => r.balance === balance);
  return {
    balance,
    tokensPerSec: median(rs.map((r) => r.tokensPerSec)),
    stepMs: median(rs.map((r) => r.stepMs)),
    commMs: median(rs.map((r) => r.commMs)),
    rankComputeMs: [0, 1].map((i) => median(rs.map((r) => r.rankComputeMs[i]!))),
    splits: rs.map((r) => r.commonSplit),
  };
});
const script = 'node --import tsx benchmarks/scaling/balance.ts';
const command = `${script} --rounds ${rounds} --steps ${steps} --warmup ${warmup}`;
const out = {
  benchmark: 'balance (2 DDP ranks, rank 1 sharing its CPU with a spinning process)',
  date: new Date().toISOString(),
  command,
  machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version },
  gainPerRound: gains,
  gain: median(gains),
  summary,
  rows,
};
mkdirSync(dirname(a.out!), { recursive: true });
writeFileSync(a.out!, JSON.stringify(out, null, 2) + '\n');
const lines = [
  '| split | tokens/s (2 ranks) | step ms | comm wait ms | compute ms rank 0 / rank 1 | most common split |',
  '|---|---|---|---|---|---|',
];
for (const s of summary)
  lines.push(
    `| ${s.balance ? '--balance' : 'even'} | ${s.tokensPerSec.toFixed(0)} ` +
      `| ${s.stepMs.toFixed(0)} | ${s.commMs.toFixed(1)} | ` +
      `${s.rankComputeMs.map((x) => x.toFixed(0)).join(' / ')} | ${s.splits.join(', ')} |`,
  );
const md =
  `# Ranks of unequal speed (${out.date})\n\n\`${command}\`\n\n${out.machine.cpus} CPUs ` +
  `(${out.machine.cpuModel}), Node ${out.machine.node}; tiny GPT, wasm, 16 windows × 64 per rank ` +
  'on average; rank 0 pinned to CPU 0, rank 1 to CPU 1, which a spinning process shares. ' +
  `Medians over steps ${warmup + 1}..${steps}, then over ${rounds} rounds; the two splits ` +
  `alternate within each round.\n\n**--balance over even: ×${out.gain.toFixed(2)}** (median of ` +
  `per-round ratios ${gains.map((g) => g.toFixed(2)).join(', ')}).\n\n${lines.join('\n')}\n`;
writeFileSync(a.out!.replace(/\.json$/, '.md'), md);
console.log(md);
