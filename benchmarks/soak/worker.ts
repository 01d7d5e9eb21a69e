// One rank of the soak benchmark (main.ts beside it starts them through the launcher). Runs
// collectives of random kinds, ops and sizes, several in flight at once, with random delays of
// its own before issuing each, and checks every result against a reference computed from every
// rank's inputs (each rank can compute every other rank's input from the shared seed). Inputs
// are small integers, so sums are exact in float32 whatever the reduction order: a result is
// either right to the bit or wrong. Prints `SOAK {json}` at the end.
//
// The sequence of collectives is drawn from a generator seeded alike on every rank (all ranks
// must issue the same collectives in the same order); the delays come from a per-rank generator.
// Stopping is agreed: every few batches rank 0 broadcasts whether the count or time is up.
import { initProcessGroup, type ProcessGroup } from '@zeroring/comm';
import { mulberry32 as rng } from '@zeroring/train';

const rank = Number(process.env.RANK);
const seed = Number(process.env.SOAK_SEED ?? 1);
const maxCollectives = Number(process.env.SOAK_MAX_COLLECTIVES ?? 2000);
const maxSeconds = Number(process.env.SOAK_MAX_SECONDS ?? 60);
const maxDelayMs = Number(process.env.SOAK_MAX_DELAY_MS ?? 5);
const maxElems = Number(process.env.SOAK_MAX_ELEMS ?? 1 << 18);

/** Rank r's input for collective `id`: integers in [-64, 64]. */
function input(id: number, r: number, len: number): Float32Array {
  const g = rng((id * 2654435761) ^ (r * 97 + 13) ^ seed);
  const a = new Float32Array(len);
  for (let i = 0; i < len; i++) a[i] = Math.floor(g() * 129) - 64;
  return a;
}

const KINDS = [
  'allReduce:sum',
  'allReduce:avg',
  'allReduce:max',
  'allReduce:min',
  'reduceScatter:sum',
  'reduceScatter:max',
  'allGather',
  'broadcast',
  'barrier',
] as const;
type Kind = (typeof KINDS)[number];

function pickLen(g: () => number, n: number): number {
  const r = g();
  if (r < 0.1) return [0, 1, 2, 3, n - 1, n + 1, 7][Math.floor(g() * 7)]!;
  // Log-uniform over 1 .. maxElems: mostly small (latency-bound), some large (pipelined chunks).
  return Math.max(1, Math.floor(Math.exp(g() * Math.log(maxElems))));
}

function reduceRef(op: string, xs: Float32Array[]): Float32Array {
  const out = new Float32Array(xs[0]!.length);
  for (let i = 0; i < out.length; i++) {
    let acc = op === 'max' ? -Infinity : op === 'min' ? Infinity : 0;
    for (const x of xs) acc = op === 'max' ? Math.max(acc, x[i]!) : op === 'min' ? Math.min(acc, x[i]!) : acc + x[i]!;
    out[i] = op === 'avg' ? acc / xs.length : acc;
  }
  return out;
}

function firstDiff(got: Float32Array, want: Float32Array, relTol: number): string | null {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) {
    const w = want[i]!;
    if (!(got[i] === w || Math.abs(got[i]! - w) <= relTol * Math.max(1, Math.abs(w))))
      return `[${i}] = ${got[i]} expected ${w}`;
  }
  return null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Where this rank is, printed if the orchestrator has to stop a hung run (SIGTERM). */
const where: Record<string, unknown> = { phase: 'init' };

async function run(pg: ProcessGroup): Promise<void> {
  const n = pg.worldSize;
  const shared = rng(seed);
  const mine = rng(seed * 7919 + rank + 1);
  const wrongs: string[] = [];
  const byKind: Record<string, number> = {};
  let done = 0;
  let bytes = 0;
  let batches = 0;
  const t0 = Date.now();
  for (;;) {
    const k = 1 + Math.floor(shared() * 4);
    const pending: Promise<void>[] = [];
    const checks: (() => void)[] = [];
    for (let j = 0; j < k; j++) {
      const kind: Kind = KINDS[Math.floor(shared() * KINDS.length)]!;
      const len = pickLen(shared, n);
      const id = done + j;
      Object.assign(where, { phase: 'issue', id, kind, len });
      if (mine() < 0.3) await sleep(mine() * maxDelayMs);
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      const [name, op] = kind.split(':') as [string, string | undefined];
      const all = () => Array.from({ length: n }, (_, r) => input(id, r, len));
      const fail = (what: string | null) => what && wrongs.push(`#${id} ${kind} len=${len}: ${what}`);
      if (name === 'allReduce') {
        const buf = input(id, rank, len);
        bytes += buf.byteLength;
        pending.push(pg.allReduce(buf, { op: op as 'sum' }));
        checks.push(() => fail(firstDiff(buf, reduceRef(op!, all()), op === 'avg' ? 1e-6 : 0)));
      } else if (name === 'reduceScatter') {
        const inp = input(id, rank, len * n);
        const out = new Float32Array(len);
        bytes += inp.byteLength;
        pending.push(pg.reduceScatter(inp, out, { op: op as 'sum' }));
        checks.push(() => {
          const xs = Array.from({ length: n }, (_, r) => input(id, r, len * n));
          fail(firstDiff(out, reduceRef(op!, xs).subarray(rank * len, (rank + 1) * len), 0));
        });
      } else if (name === 'allGather') {
        const inp = input(id, rank, len);
        const out = new Float32Array(len * n);
        bytes += out.byteLength;
        pending.push(pg.allGather(inp, out));
        checks.push(() => {
          const want = new Float32Array(len * n);
          all().forEach((x, r) => want.set(x, r * len));
          fail(firstDiff(out, want, 0));
        });
      } else if (name === 'broadcast') {
        const root = Math.floor(shared() * n);
        const buf = input(id, rank, len);
        bytes += buf.byteLength;
        pending.push(pg.broadcast(buf, root));
        checks.push(() => fail(firstDiff(buf, input(id, root, len), 0)));
      } else {
        pending.push(pg.barrier());
      }
    }
    where.phase = `await batch of ${k} ending #${done + k - 1}`;
    await Promise.all(pending);
    for (const c of checks) c();
    done += k;
    if (++batches % 8 === 0) {
      const stop = new Float32Array([
        rank === 0 && (done >= maxCollectives || Date.now() - t0 > maxSeconds * 1000) ? 1 : 0,
      ]);
      where.phase = `stop broadcast #${done + k}`;
      await pg.broadcast(stop, 0);
      done += 1;
      if (stop[0] === 1) break;
    }
  }
  const seconds = (Date.now() - t0) / 1000;
  // finishedAt: the listeners close right after this line (soak.ts tells attempts that met them closing).
  const result = {
    rank,
    worldSize: n,
    collectives: done,
    wrong: wrongs.length,
    wrongExamples: wrongs.slice(0, 5),
    byKind,
    bytes,
    seconds,
    finishedAt: Date.now(),
  };
  process.stdout.write(`SOAK ${JSON.stringify(result)}\n`);
}

const pg = await initProcessGroup();
process.on('SIGTERM', () => {
  // Private fields, read for diagnosis only.
  const p = pg as unknown as {
    running: { call: unknown } | null;
    queue: unknown[];
    failure: Error | null;
    failureQuiet: boolean;
    early: unknown[];
    destroyed: boolean;
  };
  const state = {
    running: p.running?.call ?? null,
    queued: p.queue?.length,
    failure: p.failure?.message ?? null,
    failureQuiet: p.failureQuiet,
    early: p.early?.length,
    destroyed: p.destroyed,
  };
  const message = `stopped by SIGTERM at ${JSON.stringify(where)}; group ${JSON.stringify(state)}`;
  process.stdout.write(`SOAK ${JSON.stringify({ rank, error: { name: 'Stopped', message } })}\n`);
  process.exit(1);
});
try {
  await run(pg);
} catch (e) {
  process.stdout.write(
    `SOAK ${JSON.stringify({ rank, error: { name: (e as Error).name, message: (e as Error).message } })}\n`,
  );
  process.exitCode = 1;
} finally {
  where.phase = 'destroy';
  await pg.destroy();
  where.phase = 'destroyed';
}
