// Expected per-rank model-state bytes (the formulas of DESIGN.md / packages/train/src/memory.ts)
// for the GPT presets at N = 2 and 4, with and without offload, using the real partition's shard
// length (per-block padding included). This is the "expected" side of the check that measured
// per-rank bytes are within 5% of 16Ψ, 8Ψ+8Ψ/N, 4Ψ+12Ψ/N, 16Ψ/N (memory.ts measures them).
// The figures are arithmetic, the same on every machine, so the file is named without one.
//
//   node --import tsx benchmarks/zero/memory-estimate.ts [--models tiny,small] [--nproc 2,4]
//        [--out benchmarks/results/memory-estimate.json]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { benchArgs } from '../common/args.ts';
import { RESULTS_DIR } from '../common/results.ts';
import { CharTokenizer, createGPT, gptConfig, loadCorpus, type PresetName } from '@zeroring/gpt';
import { FlatPartition } from '@zeroring/train';
import { estimateMemory, formatBytes, type MemoryEstimate } from '@zeroring/train';

const args = benchArgs(import.meta.url, {
  models: { type: 'string', default: 'tiny,small' },
  nproc: { type: 'string', default: '2,4' },
  out: { type: 'string', default: join(RESULTS_DIR, 'memory-estimate.json') },
});

const vocabSize = CharTokenizer.fromText(loadCorpus()).vocabSize; // Moby Dick, as `zeroring train` uses
const entries: Array<{
  model: string;
  vocabSize: number;
  params: number;
  nproc: number;
  shardParams: number;
  estimates: MemoryEstimate[];
}> = [];
for (const name of args.models!.split(',') as PresetName[]) {
  const model = createGPT(gptConfig(name, vocabSize));
  for (const nproc of args.nproc!.split(',').map(Number)) {
    const part = FlatPartition.fromModel(model, nproc);
    entries.push({
      model: name,
      vocabSize,
      params: part.numel,
      nproc,
      shardParams: part.shardLength,
      estimates: estimateMemory({ params: part.numel, nproc, shardParams: part.shardLength }),
    });
  }
}

const head = ['model', 'N', 'strategy', 'offload', 'device/rank', 'host/rank', 'model state/rank', 'vs 16Ψ'];
const rows = entries.flatMap((e) =>
  e.estimates.map((r) => [
    e.model,
    String(e.nproc),
    r.strategy,
    r.offload ? 'yes' : 'no',
    formatBytes(r.device.total),
    formatBytes(r.host.total),
    formatBytes(r.device.total + r.host.total),
    ((r.device.total + r.host.total) / (16 * e.params)).toFixed(3),
  ]),
);
const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
const fmt = (cells: string[]): string =>
  cells.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
console.log(`expected per-rank model-state bytes (fp32 Adam), vocab ${vocabSize}`);
console.log(fmt(head));
for (const r of rows) console.log(fmt(r));

mkdirSync(dirname(args.out!), { recursive: true });
writeFileSync(
  args.out!,
  JSON.stringify({ benchmark: 'memory-estimate', date: new Date().toISOString(), entries }, null, 2) + '\n',
);
console.log(`wrote ${args.out}`);
