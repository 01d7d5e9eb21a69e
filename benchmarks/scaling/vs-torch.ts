// Scaling side by side: torch DDP over Gloo vs zeroring DDP (wasm backend) on the tiny GPT, 1 and 2
// ranks, one thread per rank, per-rank batch 16 x 64. torch's 2-rank speedup is the reference the
// scaling goal is set against; this measures both frameworks here, interleaved, so that speedups
// are compared under the same load rather than taken from different days.
//
//   node --import tsx benchmarks/scaling/vs-torch.ts [--rounds 3] [--python /usr/bin/python3]
//        [--steps-tiny 60] [--warmup W] [--balance] [--out benchmarks/results/scaling-vs-torch-<machine>.json]
//
// Each round runs torch 1 rank, torch 2 ranks (torch.py), then zeroring 1 rank,
// zeroring 2 ranks (main.ts --models tiny --nprocs 1,2, read from its JSON; with
// --balance also zeroring 2 ranks with the step's windows balanced by measured speed), back to
// back. Speedups are taken within a round (2-rank tokens/s over 1-rank tokens/s of the same
// framework and round), then the median over rounds is quoted. Both drop the same warm-up steps
// (--warmup; default the first third, 20 of 60, as main.ts) and take the median step after
// it: zeroring's JavaScript is then mostly optimised by V8 and --balance has settled (4 of 16
// steps, an earlier default, ended about when --balance first moved).
// Each framework also runs its ceiling right after its 2-rank DDP: two independent one-rank
// models at once (no process group), whose summed tokens/s is what 2 ranks would reach if DDP
// cost nothing on this machine. DDP over that ("of ceiling") separates what DDP costs from what
// sharing the machine costs any two processes.
// Writes JSON and a Markdown table beside it, with the load average before each round and the
// CPU balance (cpu-balance.ts; main.ts measures zeroring's) right before each
// framework's pair of runs:
// when one CPU runs slower than the other, both frameworks' 2-rank runs go at its pace.
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { measureCpuBalance } from './cpu-balance.ts';
import { defaultWarmup } from './job.ts';

const here = dirname(fileURLToPath(import.meta.url));
const a = benchArgs(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  python: { type: 'string', default: '/usr/bin/python3' },
  'steps-tiny': { type: 'string', default: '60' },
  warmup: { type: 'string' },
  out: { type: 'string', default: resultPath('scaling-vs-torch') },
  // zeroring also runs 2 ranks with the step's windows balanced by measured speed
  balance: { type: 'boolean', default: false },
});
const rounds = Number(a.rounds);
const steps = Number(a['steps-tiny']);
// main.ts's default warm-up, applied to torch too so both measure the same steps.
const warmup = a.warmup ? Number(a.warmup) : defaultWarmup(steps);
const batch = 16;

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, {
    cwd: resolve(here, '../..'),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stdout.slice(-2000)}`);
  return r.stdout;
}

type Mode = 'local' | 'ddp' | 'ddp-balanced' | 'independent';

interface Run {
  framework: 'torch' | 'zeroring';
  round: number;
  nproc: number;
  mode: Mode;
  stepMs: number;
  tokensPerSec: number;
  speedup: number;
  cpuPerWall: number;
  /** Slowest over fastest CPU in the probe right before this round's runs of this framework. */
  cpuBalance: number;
}

const runs: Run[] = [];
const runOf = (framework: Run['framework'], round: number, mode: Mode): Run =>
  runs.find((r) => r.framework === framework && r.round === round && r.mode === mode)!;
/** DDP's tokens/s (plain or balanced) over the same framework's two independent models of the same round. */
const ofCeiling = (framework: Run['framework'], round: number, mode: Mode = 'ddp'): number =>
  runOf(framework, round, mode).tokensPerSec / runOf(framework, round, 'independent').tokensPerSec;
const loadBefore: number[][] = [];
let torchVersion = '';
const tmp = mkdtempSync(join(os.tmpdir(), 'scaling-vs-torch-'));
try {
  for (let round = 0; round < rounds; round++) {
    loadBefore.push(os.loadavg());
    const cpuBalance = (await measureCpuBalance(2)).ratio;
    const t = JSON.parse(
      run(a.python!, [
        resolve(here, 'torch.py'),
        '--nprocs',
        '1,2',
        '--independent',
        '2',
        '--batch',
        String(batch),
        '--steps',
        String(steps - warmup),
        '--warmup',
        String(warmup),
      ])
        .trim()
        .split('\n')
        .at(-1)!,
    ) as {
      torch: string;
      results: {
        nproc: number;
        mode: Mode;
        stepMs: number;
        tokensPerSec: number;
        speedup: number;
        cpuPerWall: number;
      }[];
    };
    torchVersion = t.torch;
    for (const r of t.results) runs.push({ framework: 'torch', round, ...r, cpuBalance });

    const out = join(tmp, `zeroring-${round}.json`);
    run(process.execPath, [
      '--import',
      'tsx',
      resolve(here, 'main.ts'),
      '--models',
      'tiny',
      '--nprocs',
      '1,2',
      '--ceiling',
      '2',
      '--batch-tiny',
      String(batch),
      '--steps-tiny',
      String(steps),
      '--warmup-tiny',
      String(warmup),
      '--out',
      out,
      '--no-charts',
      ...(a.balance ? ['--balance'] : []),
    ]);
    const z = JSON.parse(readFileSync(out, 'utf8')) as {
      runs: {
        nproc: number;
        mode: Mode;
        stepMs: number;
        tokensPerSec: number;
        speedup: number;
        cpuPerWall: number;
        cpuBalance: number;
      }[];
    };
    for (const r of z.runs)
      runs.push({
        framework: 'zeroring',
        round,
        nproc: r.nproc,
        mode: r.mode,
        stepMs: r.stepMs,
        tokensPerSec: r.tokensPerSec,
        speedup: r.speedup,
        cpuPerWall: r.cpuPerWall,
        cpuBalance: r.cpuBalance,
      });
    const said = (['torch', 'zeroring'] as const).map((f) => {
      const ddp = runOf(f, round, 'ddp');
      return (
        `${f} x${ddp.speedup.toFixed(2)}, ${ofCeiling(f, round).toFixed(2)} ` +
        `of ceiling (CPU balance ${ddp.cpuBalance.toFixed(2)})`
      );
    });
    if (a.balance)
      said.push(
        `zeroring balanced x${runOf('zeroring', round, 'ddp-balanced').speedup.toFixed(2)}, ` +
          `${ofCeiling('zeroring', round, 'ddp-balanced').toFixed(2)} of ceiling`,
      );
    console.error(`round ${round}: 2-rank speedup ${said.join('; ')} (load ${os.loadavg()[0]!.toFixed(2)})`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

const configsOf = (framework: Run['framework']): [number, Mode][] => [
  [1, 'local'],
  [2, 'ddp'],
  ...(framework === 'zeroring' && a.balance ? [[2, 'ddp-balanced'] as [number, Mode]] : []),
  [2, 'independent'],
];
const summary = (['torch', 'zeroring'] as const).flatMap((framework) =>
  configsOf(framework).map(([nproc, mode]) => {
    const rs = runs.filter((r) => r.framework === framework && r.mode === mode);
    const isDDP = mode === 'ddp' || mode === 'ddp-balanced';
    const shares = isDDP ? [...Array(rounds).keys()].map((round) => ofCeiling(framework, round, mode)) : [];
    return {
      framework,
      nproc,
      mode,
      stepMs: median(rs.map((r) => r.stepMs)),
      tokensPerSec: median(rs.map((r) => r.tokensPerSec)),
      speedup: median(rs.map((r) => r.speedup)),
      speedupPerRound: rs.map((r) => r.speedup),
      cpuPerWall: median(rs.map((r) => r.cpuPerWall)),
      cpuBalancePerRound: rs.map((r) => r.cpuBalance),
      ...(isDDP ? { ofCeiling: median(shares), ofCeilingPerRound: shares } : {}),
    };
  }),
);
const command =
  `node --import tsx benchmarks/scaling/vs-torch.ts --rounds ${rounds} ` +
  `--steps-tiny ${steps} --warmup ${warmup}${a.balance ? ' --balance' : ''}`;
const machine = {
  cpus: os.cpus().length,
  cpuModel: os.cpus()[0]?.model,
  loadavgBeforeRounds: loadBefore,
  loadavgAtEnd: os.loadavg(),
  node: process.version,
};
const result = {
  benchmark: 'scaling-vs-torch (tiny GPT, 1 vs 2 ranks, torch DDP+Gloo vs zeroring DDP wasm)',
  date: new Date().toISOString(),
  command,
  machine,
  torch: torchVersion,
  batchPerRank: batch,
  blockSize: 64,
  steps,
  warmup,
  rounds,
  results: summary,
  runs,
};
mkdirSync(dirname(a.out!), { recursive: true });
writeFileSync(a.out!, JSON.stringify(result, null, 2) + '\n');

const lines = [
  '| framework | ranks | step ms | tokens/s (all ranks) | × 1 rank (median) | × 1 rank per ' +
    'round | of ceiling (median) | of ceiling per round | CPU balance per round | rank-0 CPU/wall |',
  '|---|---|---|---|---|---|---|---|---|---|',
];
const modeName = {
  torch: { local: 'plain', ddp: 'DDP Gloo', 'ddp-balanced': '', independent: 'independent (ceiling)' },
  zeroring: { local: 'local', ddp: 'DDP', 'ddp-balanced': 'DDP --balance', independent: 'independent (ceiling)' },
};
for (const s of summary) {
  const framework = s.framework === 'torch' ? `torch ${torchVersion}` : 'zeroring wasm';
  const name = `${framework} ${modeName[s.framework][s.mode]}`;
  const perRound = (xs: number[] | undefined) => xs?.map((x) => x.toFixed(2)).join(' ') ?? '';
  lines.push(
    `| ${name} | ${s.nproc} | ${s.stepMs.toFixed(0)} | ${s.tokensPerSec.toFixed(0)} | ` +
      `${s.speedup.toFixed(2)} | ${perRound(s.speedupPerRound)} | ${s.ofCeiling?.toFixed(2) ?? ''} | ` +
      `${perRound(s.ofCeilingPerRound)} | ${perRound(s.cpuBalancePerRound)} | ${s.cpuPerWall.toFixed(2)} |`,
  );
}
const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
const md =
  `# Scaling vs torch (${result.date})\n\n\`${command}\`\n\n${machine.cpus} CPUs (${machine.cpuModel}), ` +
  `Node ${machine.node}, torch ${torchVersion}; tiny GPT, per-rank batch ${batch}×64, one ` +
  `thread per rank, AdamW; median step after ${warmup} warm-up steps of ${steps}, then median over ` +
  `${rounds} round(s); speedups taken within a round. Ceiling: two independent one-rank models of ` +
  `the same framework at once, right after its DDP run; "of ceiling" is DDP's tokens/s over theirs ` +
  'in the same round. CPU balance: the slower over the faster of two processes running the same ' +
  `JavaScript attention forward at once, just before the framework's runs of that round (1.00: equal ` +
  'CPUs; benchmarks/scaling/cpu-balance.ts). Load average (1/5/15 min) before each round: ' +
  `${loadBefore.map(load).join('; ')}; at the end: ${load(machine.loadavgAtEnd)}.\n\n${lines.join('\n')}\n`;
writeFileSync(a.out!.replace(/\.json$/, '.md'), md);
console.log(md);
