// Training over emulated links, as users run it: two hosts (network namespaces, scripts/netns.sh),
// one rank each, `zeroring train --nnodes 2 --strategy ddp --comm-hook H`, with host 1's link
// given a profile (tbf for the rate, the zr-delay relay for the delay, BPF for the loss). Per
// profile and hook: tokens/s (median over the steps after the first two, against fp32 DDP's on the
// same profile), the share of the step spent waiting on communication, and the validation loss
// after the run's fixed number of tokens (against fp32's). Needs root and what setup.sh installs.
//
//   node --import tsx benchmarks/slow-links/main.ts [--model small] [--profiles wan,1g]
//        [--hooks none,bf16,fp16,powersgd] [--steps 8] [--batch-size 1]
//        [--out benchmarks/results/slow-links-<model>-<machine>.json]
//
// Writes the JSON and a Markdown table beside it, and prints the table.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median } from '@zeroring/train';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { cannotMakeNamespaces, cannotShapeLinks, Hosts, type LinkProfile } from '../../tests/fixtures/faults/netns.ts';

const args = benchArgs(import.meta.url, {
  model: { type: 'string', default: 'small' },
  profiles: { type: 'string', default: 'wan,1g' },
  hooks: { type: 'string', default: 'none,bf16,fp16,powersgd' },
  steps: { type: 'string', default: '8' },
  'batch-size': { type: 'string', default: '1' },
  out: { type: 'string' },
});
const why = cannotMakeNamespaces() ?? cannotShapeLinks();
if (why) throw new Error(`cannot emulate links here: ${why}`);
const model = args.model!;
const out = args.out ?? resultPath(`slow-links-${model}`);
const cli = fileURLToPath(new URL('../../packages/cli/bin/zeroring.js', import.meta.url));

interface Line {
  stepMs: number;
  tokensPerSec: number;
  commMs: number;
  valLoss?: number;
}

/** One 2-node run over the current link; host 0's metrics.jsonl lines. */
async function run(hosts: Hosts, hook: string, dir: string): Promise<Line[]> {
  const port = String(20000 + Math.floor(Math.random() * 30000));
  const common = [
    ...['--model', model, '--backend', 'wasm', '--strategy', 'ddp', '--comm-hook', hook],
    ...['--steps', args.steps!, '--batch-size', args['batch-size']!, '--eval-interval', args.steps!],
    ...['--eval-batches', '2', '--sample-tokens', '0', '--seed', '3', '--warmup-steps', '1'],
    ...['--nproc', '1', '--nnodes', '2', '--master-addr', hosts.addr(0), '--master-port', port],
    // PowerSGD compresses from the second step (after one step of plain all-reduce, torch's start_powerSGD_iter).
    ...(hook === 'powersgd' ? ['--powersgd-start', '1'] : []),
  ];
  // Namespaces share /dev/shm, which separate hosts do not: ZERORING_SHM=0 keeps payloads on the link.
  const env = { ...process.env, ZERORING_TOKEN: randomBytes(16).toString('hex'), ZERORING_SHM: '0' };
  const nodes = [0, 1].map(
    (i) =>
      new Promise<void>((resolve, reject) => {
        const argv = [...hosts.exec(i), process.execPath, cli, 'train', ...common, '--node-rank', String(i)];
        const p = spawn(argv[0]!, argv.slice(1).concat(['--out', dir]), { env, stdio: 'pipe' });
        let err = '';
        p.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-3000)));
        p.stdout.resume();
        p.on('exit', (code) =>
          code === 0 ? resolve() : reject(new Error(`node ${i} (${hook}) exited ${code}:\n${err}`)),
        );
      }),
  );
  await Promise.all(nodes);
  // One --out for both, as on a shared filesystem: the checkpoint holds every rank's shard.
  const text = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim();
  return text.split('\n').map((l) => JSON.parse(l) as Line);
}

const hosts = new Hosts(2);
const work = mkdtempSync(join(tmpdir(), 'zr-slow-links-'));
const rows: Array<Record<string, unknown>> = [];
const shapes: Record<string, unknown> = {};
hosts.up();
try {
  for (const profile of args.profiles!.split(',') as LinkProfile[]) {
    hosts.unshape(1);
    shapes[profile] = hosts.shape(1, profile);
    let fp32: { tokensPerSec: number; valLoss: number; commShare: number } | undefined;
    for (const hook of args.hooks!.split(',')) {
      console.error(`${profile}: ${hook}`);
      const lines = (await run(hosts, hook, join(work, `${profile}-${hook}`))).slice(2);
      const tokensPerSec = median(lines.map((l) => l.tokensPerSec));
      const commShare = median(lines.map((l) => l.commMs / l.stepMs));
      const valLoss = lines.at(-1)!.valLoss!;
      fp32 ??= hook === 'none' ? { tokensPerSec, valLoss, commShare } : undefined;
      rows.push({
        profile,
        hook,
        tokensPerSec,
        speedup: fp32 ? tokensPerSec / fp32.tokensPerSec : null,
        commShare,
        commShareVsFp32: fp32 ? commShare / fp32.commShare : null,
        valLoss,
        valLossVsFp32: fp32 ? valLoss / fp32.valLoss - 1 : null,
      });
    }
  }
} finally {
  hosts.down();
  rmSync(work, { recursive: true, force: true });
}

const num = (x: unknown, d: number, suffix = ''): string => (typeof x === 'number' ? `${x.toFixed(d)}${suffix}` : '-');
const table = [
  `${model}, 2 hosts x 1 rank, DDP, batch ${args['batch-size']} per rank, ${args.steps} steps (medians after step 2)`,
  '',
  '| profile | hook | tokens/s | vs fp32 | comm share | vs fp32 | val loss | vs fp32 |',
  '|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.profile} | ${r.hook} | ${num(r.tokensPerSec, 0)} | ${num(r.speedup, 2, 'x')} | ` +
      `${num(100 * (r.commShare as number), 1, ' %')} | ${num(r.commShareVsFp32, 2, 'x')} | ${num(r.valLoss, 3)} | ` +
      `${typeof r.valLossVsFp32 === 'number' ? `${(100 * r.valLossVsFp32).toFixed(1)} %` : '-'} |`,
  ),
].join('\n');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ model, steps: Number(args.steps), shapes, rows }, null, 2) + '\n');
writeFileSync(out.replace(/\.json$/, '.md'), `${table}\n`);
console.log(table);
