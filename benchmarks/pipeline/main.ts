// The pipeline's bubble and its send/recv latency, measured: the GPT preset cut into P stages
// (one process each, started by launch() as `zeroring launch` does), steps of M micro-batches
// of B windows run in GPipe and 1F1B order alternately (worker.ts). A stage's bubble is the share
// of its step spent waiting for a neighbour in recv; the theory for equal stages is
// (P-1)/(M+P-1). Also the one-way time of one micro-batch's activation (B x T x C floats) over the pipeline's
// send/recv between two processes, against a plain TCP socket between two processes on loopback
// (the raw hop, with no framing and no matching).
//
//   node --import tsx benchmarks/pipeline/main.ts [--model tiny] [--pp 2] [--micro 8] [--batch 4] [--steps 6]
//        [--pings 50]
//        [--out benchmarks/results/pipeline-<model>-<machine>.json]
//
// Writes the JSON and a Markdown table beside it, and prints the table. Medians over the steps.
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from '@zeroring/comm';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';
import { Writable } from 'node:stream';

const args = benchArgs(import.meta.url, {
  model: { type: 'string', default: 'tiny' },
  pp: { type: 'string', default: '2' },
  micro: { type: 'string', default: '8' },
  batch: { type: 'string', default: '4' },
  steps: { type: 'string', default: '6' },
  pings: { type: 'string', default: '50' },
  out: { type: 'string' },
});
const P = Number(args.pp);
const M = Number(args.micro);
const out = args.out ?? resultPath(`pipeline-${args.model}`);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _e: BufferEncoding, done: () => void): void {
    this.text += chunk;
    done();
  }
}

interface StageStep {
  schedule: string;
  stepMs: number;
  recvWaitMs: number;
  peakLive: number;
}
interface WorkerResult {
  perStage: StageStep[][];
  pings: number[];
  activationFloats: number;
  cuts: Array<{ first: number; end: number; params: number }>;
}

async function pipeline(): Promise<WorkerResult> {
  const stdout = new Collect();
  const stderr = new Collect();
  const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const arg = {
    model: args.model,
    micro: M,
    batch: Number(args.batch),
    steps: Number(args.steps),
    pings: Number(args.pings),
  };
  const r = await launch({ nprocPerNode: P, script: worker, args: [JSON.stringify(arg)], stdout, stderr });
  if (r.exitCode !== 0) throw new Error(`the pipeline job exited ${r.exitCode}:\n${stderr.text.slice(-3000)}`);
  const line = stdout.text.split('\n').find((l) => l.includes('RESULT '));
  if (!line) throw new Error(`no RESULT line:\n${stdout.text.slice(-3000)}`);
  return JSON.parse(line.slice(line.indexOf('RESULT ') + 7)) as WorkerResult;
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

const res = await pipeline();
const hopMs = await tcpHop(res.activationFloats * 4, Number(args.pings));
const theory = (P - 1) / (M + P - 1);
const rows = ['gpipe', '1f1b'].map((schedule) => {
  const stages = res.perStage.map((steps, s) => {
    const mine = steps.filter((x) => x.schedule === schedule);
    return {
      stage: s,
      stepMs: median(mine.map((x) => x.stepMs)),
      bubble: median(mine.map((x) => x.recvWaitMs / x.stepMs)),
      peakLive: Math.max(...mine.map((x) => x.peakLive)),
    };
  });
  return { schedule, stages, meanBubble: stages.reduce((a, x) => a + x.bubble, 0) / stages.length };
});
const sendRecvMs = median(res.pings);
const result = { model: args.model, pp: P, micro: M, theory, rows, cuts: res.cuts, sendRecvMs, tcpHopMs: hopMs };
const pct = (x: number): string => `${(100 * x).toFixed(1)} %`;
const table = [
  `| schedule | step (median, stage 0) | bubble per stage | mean bubble | theory (P-1)/(M+P-1) | peak live per stage |`,
  `|---|---|---|---|---|---|`,
  ...rows.map(
    (r) =>
      `| ${r.schedule} | ${r.stages[0]!.stepMs.toFixed(0)} ms | ${r.stages.map((x) => pct(x.bubble)).join(', ')} | ` +
      `${pct(r.meanBubble)} | ${pct(theory)} | ${r.stages.map((x) => x.peakLive).join(', ')} |`,
  ),
  '',
  `One activation (${res.activationFloats} floats, a micro-batch's) one way: ${sendRecvMs.toFixed(3)} ms ` +
    `over send/recv between two processes, ${hopMs.toFixed(3)} ms over a raw loopback TCP socket between ` +
    `two processes (medians).`,
].join('\n');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
const head =
  `Pipeline of ${args.model}, P = ${P} stages, M = ${M} micro-batches of ${args.batch} windows ` + '(wasm backend)';
writeFileSync(out.replace(/\.json$/, '.md'), `${head}\n\n${table}\n`);
console.log(table);
