// zeroring's all-reduce next to Gloo's (torch.distributed, the C++ CPU collectives PyTorch
// ships), on the same machine in the same run: each round runs Gloo (gloo.py) and then
// `zeroring bench collectives` on the same sizes, and the table gives per size the median over
// rounds of each one's time and busbw and of zeroring/Gloo busbw within a round (a ratio taken
// a few seconds apart, so the shared machine's drift cancels as far as it can).
//
//   node --import tsx benchmarks/collectives/vs-gloo.ts [--nproc 2] [--rounds 3] [--sizes 4K,16M,32M,64M]
//        [--python /usr/bin/python3] [--out benchmarks/results/collectives-vs-gloo-<nproc>-<machine>.json]
//
// Needs python3 with torch (Debian: apt-get install python3-torch, torch 1.13 with Gloo).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { parseBytes } from '@zeroring/comm';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const a = benchArgs(import.meta.url, {
  nproc: { type: 'string', default: '2' },
  rounds: { type: 'string', default: '3' },
  sizes: { type: 'string', default: '4K,16M,32M,64M' },
  python: { type: 'string', default: '/usr/bin/python3' },
  out: { type: 'string' },
});
const nproc = Number(a.nproc);
const rounds = Number(a.rounds);
const sizes = a.sizes!.split(',').map((s) => parseBytes(s));
const out = resolve(a.out ?? resultPath(`collectives-vs-gloo-${nproc}`));
const tmp = mkdtempSync(join(os.tmpdir(), 'zr-vs-gloo-'));
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;
/** Small messages are latency: many iterations, as gloo.py does below 1 MiB. */
const SMALL = 1 << 20;

interface Row {
  bytes: number;
  timeUs: number;
  busbwGBs: number;
}

function gloo(): Row[] {
  const line = execFileSync(a.python!, [join(here, 'gloo.py'), '--nproc', String(nproc), '--sizes', sizes.join(',')], {
    encoding: 'utf8',
  });
  return (JSON.parse(line.trim().split('\n').pop()!) as { rows: Row[] }).rows;
}

function zeroring(): Row[] {
  return sizes.map((bytes) => {
    const json = join(tmp, `zr-${bytes}.json`);
    const iters = bytes < SMALL ? ['--iters', '1000', '--warmup', '100'] : ['--iters', '10', '--warmup', '3'];
    execFileSync(
      process.execPath,
      [
        join(root, 'packages/cli/bin/zeroring.js'),
        'bench',
        'collectives',
        '--nproc',
        String(nproc),
        '--ops',
        'allreduce',
        '--min-bytes',
        String(bytes),
        '--max-bytes',
        String(bytes),
        ...iters,
        '--pump-reps',
        '1',
        '--json',
        json,
        '--log-level',
        'warn',
      ],
      { stdio: 'ignore' },
    );
    const row = (JSON.parse(readFileSync(json, 'utf8')) as { rows: Row[] }).rows[0]!;
    return { bytes, timeUs: row.timeUs, busbwGBs: row.busbwGBs };
  });
}

const runs: { round: number; gloo: Row[]; zeroring: Row[] }[] = [];
for (let round = 0; round < rounds; round++) {
  runs.push({ round, gloo: gloo(), zeroring: zeroring() });
  process.stderr.write(`round ${round + 1}/${rounds} done\n`);
}

const table = sizes.map((bytes, i) => {
  const g = runs.map((r) => r.gloo[i]!);
  const z = runs.map((r) => r.zeroring[i]!);
  return {
    bytes,
    glooTimeUs: median(g.map((r) => r.timeUs)),
    zeroringTimeUs: median(z.map((r) => r.timeUs)),
    glooBusbwGBs: median(g.map((r) => r.busbwGBs)),
    zeroringBusbwGBs: median(z.map((r) => r.busbwGBs)),
    /** Median over rounds of zeroring busbw / Gloo busbw (> 1: zeroring is faster). */
    ratio: median(runs.map((r) => r.zeroring[i]!.busbwGBs / r.gloo[i]!.busbwGBs)),
  };
});

const load = os.loadavg()[0]!.toFixed(1);
const human = (b: number) => (b >= 1 << 20 ? `${b >> 20}M` : `${b >> 10}K`);
const md = [
  `# All-reduce: zeroring vs Gloo (torch.distributed), ${nproc} ranks on ${os.cpus().length} cores`,
  '',
  `\`node --import tsx benchmarks/collectives/vs-gloo.ts --nproc ${nproc} --rounds ` +
    `${rounds} --sizes ${a.sizes}\` (${new Date().toISOString().slice(0, 16)}, load average at ` +
    `the end ${load}); medians over rounds; time = slowest rank, median over iterations.`,
  '',
  '| bytes | Gloo time (µs) | zeroring time (µs) | Gloo busbw (GB/s) | zeroring busbw (GB/s) | zeroring / Gloo |',
  '|---|---|---|---|---|---|',
  ...table.map(
    (t) =>
      `| ${human(t.bytes)} | ${t.glooTimeUs.toFixed(1)} | ${t.zeroringTimeUs.toFixed(1)} | ` +
      `${t.glooBusbwGBs.toFixed(3)} | ${t.zeroringBusbwGBs.toFixed(3)} | ${t.ratio.toFixed(2)} |`,
  ),
  '',
].join('\n');
writeFileSync(
  out,
  JSON.stringify(
    {
      bench: 'allreduce vs gloo',
      date: new Date().toISOString(),
      nproc,
      rounds,
      cores: os.cpus().length,
      loadAverageEnd: os.loadavg()[0],
      table,
      runs,
    },
    null,
    2,
  ) + '\n',
);
writeFileSync(out.replace(/\.json$/, '.md'), md);
process.stdout.write(md);
