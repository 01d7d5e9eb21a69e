// CPU balance probe: do this machine's CPUs run the same work equally fast right now?
//
// On a shared VM one vCPU can run memory-heavy code ~40 % slower than the other for minutes at a
// time (a neighbour on its physical core), while a plain arithmetic loop shows ~10 %. Two DDP
// ranks then go at the slower one's pace, torch and zeroring alike, and a 2-rank speedup says
// more about the host than about either framework. This runs the GPT's JavaScript attention
// forward (memory-heavy like a training step) in N processes at the same moment and reports each
// one's time; the scaling benchmarks record it beside every round.
//
//   node --import tsx benchmarks/scaling/cpu-balance.ts [--procs 2] [--iterations 12]
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { benchArgs } from '../common/args.ts';
import { attentionForward } from '@zeroring/gpt';

export interface CpuBalance {
  /** Each process's time for the same work, ms, fastest first. */
  ms: number[];
  /** Slowest over fastest: 1 when the CPUs are equally fast. */
  ratio: number;
}

const shape = { B: 16, T: 64, H: 4 }; // the tiny GPT's attention
const C = 128;

/** The probe's work, timed from `startAt` (epoch ms) so that all processes run it together. */
async function probeWork(iterations: number, startAt: number): Promise<number> {
  const qkv = Float32Array.from({ length: shape.B * shape.T * 3 * C }, (_, i) => Math.sin(i));
  const y = new Float32Array(shape.B * shape.T * C);
  const att = new Float32Array(shape.B * shape.H * shape.T * shape.T);
  for (let i = 0; i < 3; i++) attentionForward(qkv, shape, C, y, att); // compile before timing
  await new Promise((r) => setTimeout(r, Math.max(0, startAt - Date.now())));
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) attentionForward(qkv, shape, C, y.fill(0), att.fill(0));
  return performance.now() - t0;
}

/** Runs the probe in `procs` processes at once. */
export async function measureCpuBalance(procs = 2, iterations = 12): Promise<CpuBalance> {
  const startAt = Date.now() + 3000; // after every process has started and compiled
  const me = fileURLToPath(import.meta.url);
  const times = await Promise.all(
    Array.from({ length: procs }, () => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', me, '--worker', String(startAt), '--iterations', String(iterations)],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      return new Promise<number>((res, rej) =>
        child.on('exit', (code) => {
          const ms = Number(out.trim());
          if (code === 0 && Number.isFinite(ms)) res(ms);
          else rej(new Error(`cpu-balance probe exited ${code} with output "${out.trim()}"`));
        }),
      );
    }),
  );
  times.sort((x, y) => x - y);
  return { ms: times, ratio: times.at(-1)! / times[0]! };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const a = benchArgs(import.meta.url, {
    worker: { type: 'string' }, // internal: run the probe in this process, starting at this epoch ms
    procs: { type: 'string', default: '2' },
    iterations: { type: 'string', default: '12' },
  });
  if (a.worker) {
    console.log((await probeWork(Number(a.iterations), Number(a.worker))).toFixed(1));
  } else {
    const b = await measureCpuBalance(Number(a.procs), Number(a.iterations));
    console.log(`${b.ms.map((x) => x.toFixed(0)).join(' / ')} ms, slowest/fastest ${b.ratio.toFixed(2)}`);
  }
}
