// The pipeline as users run it, measured through `zeroring train --pp P` and the figures its
// metrics.jsonl records per stage:
//   bubble   tiny, P stages, M micro-batches of B windows, GPipe, 1F1B and interleaved 1F1B (2 chunks
//            per stage), stages cut by parameter count and by measured time (--pp-balance), runs
//            alternating; a stage's bubble is the share of its forward-backward time spent waiting
//            for a neighbour, against the theory for equal stages (P-1)/(V·M+P-1); medians over
//            the steps after the first two
//   memory   small, P = 2, M = 8 micro-batches of one window: each stage's peak of activation
//            bytes (the engine's accounting of every live micro-batch) under 1F1B against GPipe
//   latency  one micro-batch's activation (B x T x C floats) one way over the process group's
//            send/recv between two processes (worker.ts), against a plain TCP socket on loopback
//
//   node --import tsx benchmarks/pipeline/main.ts [--pp 2] [--micro 8] [--batch 4] [--steps 8] [--rounds 2]
//        [--memory-model small] [--pings 50] [--out benchmarks/results/pipeline-<machine>.json]
//
// Writes the JSON and a Markdown table beside it, and prints the table.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { launch } from '@zeroring/comm';
import { median, namedSchedule, simulateSchedule, type PipeScheduleName } from '@zeroring/train';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';

const args = benchArgs(import.meta.url, {
  pp: { type: 'string', default: '2' },
  micro: { type: 'string', default: '8' },
  batch: { type: 'string', default: '4' },
  steps: { type: 'string', default: '8' },
  rounds: { type: 'string', default: '2' },
  'memory-model': { type: 'string', default: 'small' },
  pings: { type: 'string', default: '50' },
  out: { type: 'string' },
});
const P = Number(args.pp);
const M = Number(args.micro);
const B = Number(args.batch);
const out = args.out ?? resultPath('pipeline');
const cli = fileURLToPath(new URL('../../packages/cli/bin/zeroring.js', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'zr-pipeline-bench-'));

interface StageFigures {
  computeMs: number;
  waitMs: number;
  bubble: number;
  peakActivationBytes: number;
  peakLive: number;
}
interface Line {
  stepMs: number;
  pipeline: { bubble: number; stages: StageFigures[]; timeline: Array<Array<[string, number, number, number]>> };
}

/**
 * The schedule's own bubble for the stages as they ran: simulated (buffered sends, no transfer
 * time) with each stage's median forward and backward times from the runs' timelines. Where the
 * stages are unequal this is the best the schedule can do with them, which the theory for equal
 * stages is not.
 */
function simulatedBubble(schedule: string, lines: Line[]): number {
  const durations = (op: string) =>
    Array.from({ length: P }, (_, s) =>
      median(lines.flatMap((l) => l.pipeline.timeline[s]!.filter((x) => x[0] === op).map((x) => x[3] - x[2]))),
    );
  const plan = namedSchedule(schedule as PipeScheduleName, P, M, schedule === 'interleaved' ? 2 : 1);
  return simulateSchedule(plan, { fwdTime: durations('F'), bwdTime: durations('B'), comm: 'buffered' }).bubble;
}

/** `zeroring train --pp` with these flags; its metrics.jsonl lines. */
function train(name: string, flags: string[]): Line[] {
  const dir = join(work, name);
  const common = '--backend wasm --eval-interval 1000 --eval-batches 1 --sample-tokens 0 --seed 1 --warmup-steps 1';
  const argv = [cli, 'train', '--nproc', String(P), '--pp', String(P), ...common.split(' '), ...flags, '--out', dir];
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`zeroring train ${flags.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
  const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  return lines.map((l) => JSON.parse(l) as Line);
}

/** The bubble at equal stage times: (P-1)/(V·M+P-1), V = 2 chunks per stage for the interleaved schedule. */
const theoryOf = (schedule: string): number => (P - 1) / ((schedule === 'interleaved' ? 2 : 1) * M + P - 1);
const theory = theoryOf('1f1b');
const bubbleRuns = new Map<string, Line[]>();
const schedules = ['gpipe', '1f1b', 'interleaved'];
const balances = ['params', 'time'];
for (let round = 0; round < Number(args.rounds); round++) {
  for (const balance of balances) {
    for (const schedule of schedules) {
      const key = `${schedule} ${balance}`;
      console.error(`bubble: ${key}, round ${round + 1}`);
      const flags = [
        '--model',
        'tiny',
        '--steps',
        args.steps!,
        '--micro-batches',
        String(M),
        '--batch-size',
        String(B),
      ];
      const lines = train(key.replace(' ', '-'), [...flags, '--schedule', schedule, '--pp-balance', balance]);
      // The first two steps warm up (kernels compiled, links opened).
      bubbleRuns.set(key, [...(bubbleRuns.get(key) ?? []), ...lines.slice(2)]);
    }
  }
}
const bubbles = [...bubbleRuns].map(([key, lines]) => {
  const [schedule, balance] = key.split(' ');
  const stages = Array.from({ length: P }, (_, s) => median(lines.map((l) => l.pipeline.stages[s]!.bubble)));
  return {
    schedule,
    balance,
    stepMs: median(lines.map((l) => l.stepMs)),
    stages,
    bubble: median(lines.map((l) => l.pipeline.bubble)),
    theory: theoryOf(schedule!),
    simulated: simulatedBubble(schedule!, lines),
  };
});

const memModel = args['memory-model']!;
const memory = ['gpipe', '1f1b'].map((schedule) => {
  console.error(`memory: ${memModel}, ${schedule}`);
  const flags = ['--model', memModel, '--steps', '2', '--micro-batches', '8', '--batch-size', '1'];
  const lines = train(`memory-${schedule}`, [...flags, '--schedule', schedule]);
  const stages = Array.from({ length: P }, (_, s) => ({
    peakActivationBytes: Math.max(...lines.map((l) => l.pipeline.stages[s]!.peakActivationBytes)),
    peakLive: Math.max(...lines.map((l) => l.pipeline.stages[s]!.peakLive)),
  }));
  return { schedule, stages };
});
const ratio = memory[1]!.stages.map((x, s) => x.peakActivationBytes / memory[0]!.stages[s]!.peakActivationBytes);
rmSync(work, { recursive: true, force: true });

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, done: () => void): void {
    this.text += chunk;
    done();
  }
}

/** One-way send/recv times of `floats` floats between two worker processes (worker.ts). */
async function sendRecv(floats: number): Promise<number[]> {
  const stdout = new Collect();
  const stderr = new Collect();
  const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const arg = JSON.stringify({ floats, pings: Number(args.pings) });
  const r = await launch({ nprocPerNode: 2, script: worker, args: [arg], stdout, stderr });
  if (r.exitCode !== 0) throw new Error(`the ping job exited ${r.exitCode}:\n${stderr.text.slice(-3000)}`);
  const line = stdout.text.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`no RESULT line:\n${stdout.text.slice(-3000)}`);
  return (JSON.parse(line.slice(line.indexOf('RESULT ') + 7)) as { pings: number[] }).pings;
}

/** A process that echoes every full message of `bytes` back: the raw hop's other end. */
const ECHO = `
const net = require('node:net');
const bytes = Number(process.argv[1]);
const server = net.createServer((peer) => {
  peer.setNoDelay(true);
  let got = 0;
  peer.on('data', (d) => {
    got += d.length;
    while (got >= bytes) { got -= bytes; peer.write(Buffer.alloc(bytes)); }
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;

/**
 * One-way time of `bytes` between two processes over a plain loopback TCP socket (ping-pong,
 * halved), median of `reps`: the hop with no framing, matching or handshake.
 */
async function tcpHop(bytes: number, reps: number): Promise<number> {
  const echo = spawn(process.execPath, ['-e', ECHO, String(bytes)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve) => echo.stdout.once('data', (d: Buffer) => resolve(Number(d))));
  const client = connect(port, '127.0.0.1');
  client.setNoDelay(true);
  await new Promise<void>((r) => client.once('connect', r));
  const payload = Buffer.alloc(bytes);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      let back = 0;
      const onData = (d: Buffer): void => {
        back += d.length;
        if (back >= bytes) {
          client.off('data', onData);
          resolve();
        }
      };
      client.on('data', onData);
      client.write(payload);
    });
    times.push((performance.now() - t0) / 2);
  }
  client.destroy();
  echo.kill();
  return median(times);
}

const TINY = { blockSize: 64, nEmbd: 128 };
const activationFloats = B * TINY.blockSize * TINY.nEmbd;
const sendRecvMs = median(await sendRecv(activationFloats));
const tcpHopMs = await tcpHop(activationFloats * 4, Number(args.pings));

const result = {
  pp: P,
  micro: M,
  batch: B,
  theory,
  bubbles,
  memoryModel: memModel,
  memory,
  ratio,
  sendRecvMs,
  tcpHopMs,
};
const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
const mib = (x: number): string => `${(x / 2 ** 20).toFixed(1)} MiB`;
const table = [
  `Bubble: tiny, P = ${P}, M = ${M} micro-batches of ${B} windows; theory (P-1)/(V·M+P-1) with V = 1, or 2 chunks ` +
    `per stage (interleaved)`,
  '',
  '| schedule | stages cut by | step (median) | bubble per stage | mean bubble | theory | minus theory ' +
    '| simulated for these stages |',
  '|---|---|---|---|---|---|---|---|',
  ...bubbles.map(
    (r) =>
      `| ${r.schedule} | ${r.balance} | ${r.stepMs.toFixed(0)} ms | ${r.stages.map(pct).join(', ')} | ` +
      `${pct(r.bubble)} | ${pct(r.theory)} | ${((r.bubble - r.theory) * 100).toFixed(1)} pts | ${pct(r.simulated)} |`,
  ),
  '',
  `Activation memory: ${memModel}, P = ${P}, M = 8 micro-batches of 1 window, peak per stage`,
  '',
  '| stage | GPipe | 1F1B | 1F1B / GPipe | live micro-batches, GPipe / 1F1B |',
  '|---|---|---|---|---|',
  ...ratio.map((r, s) => {
    const [g, o] = [memory[0]!.stages[s]!, memory[1]!.stages[s]!];
    return (
      `| ${s} | ${mib(g.peakActivationBytes)} | ${mib(o.peakActivationBytes)} | ${r.toFixed(3)} ` +
      `| ${g.peakLive} / ${o.peakLive} |`
    );
  }),
  '',
  `One activation (${activationFloats} floats, a micro-batch's) one way: ${sendRecvMs.toFixed(3)} ms over ` +
    `send/recv between two processes, ${tcpHopMs.toFixed(3)} ms over a raw loopback TCP socket (medians).`,
].join('\n');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
writeFileSync(out.replace(/\.json$/, '.md'), `${table}\n`);
console.log(table);
