// How much of a checkpoint each rank reads to resume at another world size, through the CLI:
// `zeroring train --model small --strategy zero3` saves at N ranks after one step, and resumes
// with --resume at every M given (a copy of the run each time), with ZeRO-3 and with DDP. Each
// resumed run's summary.json says the most model-state bytes any of its ranks read
// (resumeRead.maxRankBytes) and the whole state's size; the goal for sharded strategies is at most
// 1/M of it plus one block. DDP ranks hold everything, so they read it all: the control.
//
//   node --import tsx benchmarks/checkpoint-reshard/main.ts [--model small] [--from 4] [--to 1,2,3,4]
//        [--out benchmarks/results/checkpoint-reshard-<model>-<machine>.json]
//
// Writes the JSON and a Markdown table beside it, and prints the table.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';

const args = benchArgs(import.meta.url, {
  model: { type: 'string', default: 'small' },
  from: { type: 'string', default: '4' },
  to: { type: 'string', default: '1,2,3,4' },
  out: { type: 'string' },
});
const model = args.model!;
const from = Number(args.from);
const targets = args.to!.split(',').map(Number);
const out = args.out ?? resultPath(`checkpoint-reshard-${model}`);
const cli = fileURLToPath(new URL('../../packages/cli/bin/zeroring.js', import.meta.url));
const common = `--model ${model} --backend wasm --batch-size 1 --steps 2 --eval-interval 100 --eval-batches 1 \
--sample-tokens 0 --seed 1 --warmup-steps 1`.split(' ');
/** The per-rank byte size of one hashed block of a shard (checkpoint.ts BLOCK_FLOATS). */
const BLOCK_BYTES = 65536;

function train(extra: string[]): void {
  const r = spawnSync(process.execPath, [cli, 'train', ...common, ...extra], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`zeroring train ${extra.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
}

const work = mkdtempSync(join(tmpdir(), 'zr-reshard-bench-'));
try {
  const saved = join(work, 'saved');
  console.error(`saving: ${model}, zero3 at ${from} ranks, one step`);
  train(['--nproc', String(from), '--strategy', 'zero3', '--stop-after', '1', '--out', saved]);
  const rows = [];
  for (const strategy of ['zero3', 'ddp']) {
    for (const m of targets) {
      const dir = join(work, `${strategy}-${m}`);
      cpSync(saved, dir, { recursive: true });
      console.error(`resuming at ${m} ranks with ${strategy}`);
      train(['--nproc', String(m), '--strategy', strategy, '--resume', '--out', dir]);
      const { maxRankBytes, stateBytes } = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).resumeRead;
      const share = maxRankBytes / stateBytes;
      const excessBlocks = (maxRankBytes - stateBytes / m) / BLOCK_BYTES;
      rows.push({ strategy, from, to: m, maxRankBytes, stateBytes, share, idealShare: 1 / m, excessBlocks });
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const table = [
    `| resumed as | ranks M | most read by a rank | of the state | 1/M | beyond 1/M, in 64 KiB blocks |`,
    `|---|---|---|---|---|---|`,
    ...rows.map(
      (r) =>
        `| ${r.strategy} | ${r.to} | ${(r.maxRankBytes / 2 ** 20).toFixed(1)} MB | ${(100 * r.share).toFixed(1)} % | ` +
        `${(100 * r.idealShare).toFixed(1)} % | ${r.excessBlocks.toFixed(1)} |`,
    ),
  ].join('\n');
  const result = { model, savedBy: { strategy: 'zero3', worldSize: from }, blockBytes: BLOCK_BYTES, rows };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  const head =
    `Checkpoint of ${model} saved by zero3 at ${from} ranks, resumed at M ranks ` +
    `(${rows[0]?.stateBytes} bytes of state)`;
  writeFileSync(out.replace(/\.json$/, '.md'), `${head}\n\n${table}\n`);
  console.log(table);
} finally {
  rmSync(work, { recursive: true, force: true });
}
