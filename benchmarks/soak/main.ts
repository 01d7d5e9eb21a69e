// Soak benchmark: thousands of collectives of random kinds, ops and sizes with random delays on
// 2-4 ranks (worker.ts, started by the real launcher), while a stranger (stranger.ts)
// keeps knocking on the job's store and ring ports: wrong token, garbage frames, oversized
// frames (before auth and past maxPayload), text frames, forged MACs, raw TCP bytes, connections
// dropped mid-handshake. Reports collectives done, wrong results (must be 0), faults injected,
// faults rejected as they must be, rejections the job logged, and whether every worker ended
// cleanly. Bounded by a collective count and a time limit per world size.
//
//   node --import tsx benchmarks/soak/main.ts [--ranks 2,3,4] [--collectives 3000] [--seconds 60]
//        [--max-delay-ms 5] [--max-elems 262144] [--seed 1] [--fault-rate 10]
//        [--json benchmarks/results/soak-<machine>.json]
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, launch, type LaunchResult } from '@zeroring/comm';
import { Collect } from '../common/collect.ts';
import { getLogger } from '@zeroring/comm';
import { StoreClient } from '@zeroring/comm';
import { mulberry32 as rng } from '@zeroring/train';
import { attempt, FAULTS, type Attempt, type Fault, type Target } from './stranger.ts';
import { benchArgs } from '../common/args.ts';
import { resultPath } from '../common/results.ts';

export interface SoakOptions {
  ranks: number[];
  collectives: number;
  seconds: number;
  maxDelayMs: number;
  maxElems: number;
  seed: number;
  /** Stranger attempts per second, roughly (0: none). */
  faultRate: number;
}

export interface SoakRun {
  worldSize: number;
  collectives: number;
  wrong: number;
  wrongExamples: string[];
  seconds: number;
  collectivesPerSec: number;
  byKind: Record<string, number>;
  faultsInjected: number;
  faultsRejected: number;
  faultsSurvived: number;
  /** Attempts that ended after the first rank finished (may have met a closing listener): not counted. */
  faultsOverlappingShutdown: number;
  byFault: Record<string, { injected: number; rejected: number; outcomes: Record<string, number> }>;
  /**
   * Rejections the job's endpoints wrote to their logs ("rejected a connection", "closing
   * connection", "dropping malformed HTTP").
   */
  loggedRejections: number;
  exitCode: number;
  workersOk: boolean;
  /** The run did not end within its time limit + 180 s and was stopped. */
  hung: boolean;
}

const log = getLogger({ component: 'soak' });
log.level = 'silent';
const worker = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** Learns the job's ring ports from its store (we hold the token: we are its launcher). */
async function targets(port: number, token: string, worldSize: number, deadline: number): Promise<Target[]> {
  const store = await StoreClient.connect({
    host: '127.0.0.1',
    port,
    token,
    timeoutMs: Math.max(1000, deadline - Date.now()),
    log,
  });
  try {
    const out: Target[] = [{ kind: 'store', host: '127.0.0.1', port }];
    for (let r = 0; r < worldSize; r++) {
      const addr = String(await store.get(`g0/addr/${r}`, Math.max(1000, deadline - Date.now())));
      const i = addr.lastIndexOf(':');
      out.push({ kind: 'peer', host: addr.slice(0, i), port: Number(addr.slice(i + 1)) });
    }
    return out;
  } finally {
    store.close();
  }
}

export async function soakOne(worldSize: number, o: SoakOptions): Promise<SoakRun> {
  const token = randomBytes(32).toString('hex');
  const masterPort = await freePort();
  const stdout = new Collect();
  const stderr = new Collect();
  const hang = new AbortController();
  const job: Promise<LaunchResult> = launch({
    nprocPerNode: worldSize,
    masterPort,
    script: worker,
    env: {
      ZERORING_TOKEN: token,
      ZERORING_TIMEOUT_MS: '60000',
      ZERORING_LOG_FORMAT: 'json',
      ZERORING_LOG_LEVEL: 'warn',
      SOAK_SEED: String(o.seed * 101 + worldSize),
      SOAK_MAX_COLLECTIVES: String(o.collectives),
      SOAK_MAX_SECONDS: String(o.seconds),
      SOAK_MAX_DELAY_MS: String(o.maxDelayMs),
      SOAK_MAX_ELEMS: String(o.maxElems),
    },
    stdout,
    stderr,
    onMessage: (m) => stderr.write(`launch: ${m}\n`),
    forwardSignals: false,
    abortSignal: hang.signal,
  });
  // A run that outlives its time limit by far is hung: stop it (workers print where they were).
  const hangTimer = setTimeout(() => hang.abort(), (o.seconds + 180) * 1000);
  let finished = false;
  const ended = job.finally(() => (finished = true));
  const attempts: Array<Attempt & { endedAt: number }> = [];
  let overlapped = 0;
  const g = rng(o.seed * 31 + worldSize);
  const stranger = (async () => {
    if (o.faultRate <= 0) return;
    let ts: Target[];
    try {
      ts = await targets(masterPort, token, worldSize, Date.now() + 120_000);
    } catch {
      return; // the job ended (or never started): nothing to knock on
    }
    while (!finished) {
      const fault: Fault = FAULTS[Math.floor(g() * FAULTS.length)]!;
      const target = ts[Math.floor(g() * ts.length)]!;
      // Oversized frames past maxPayload cost the stranger 4-16 MiB each: send them less often.
      if (fault === 'oversized-frame' && g() < 0.7) continue;
      const a = { ...(await attempt(fault, target)), endedAt: Date.now() };
      // Once a rank has finished (its SOAK line) its listener closes: an attempt that ends after
      // that may have met a closing listener rather than the job, so it is not counted.
      if (finished || stdout.text.includes('SOAK ')) {
        overlapped++;
        break;
      }
      attempts.push(a);
      await new Promise((r) => setTimeout(r, (g() * 2000) / o.faultRate));
    }
  })();
  const result = await ended;
  clearTimeout(hangTimer);
  await stranger;
  const lines = [...stdout.text.matchAll(/SOAK (\{.*\})$/gm)].map((m) => JSON.parse(m[1]!) as Record<string, unknown>);
  // The check above sees a SOAK line only once it has come through the launcher's pipes, while
  // the worker closes its listeners right after printing it. An attempt not rejected as it must
  // be, that ended after the first worker finished (its clock, this machine's), met a closing
  // listener: it joins the overlapping ones.
  const firstFinished = Math.min(...lines.map((l) => (typeof l.finishedAt === 'number' ? l.finishedAt : Infinity)));
  for (let i = attempts.length - 1; i >= 0; i--) {
    const a = attempts[i]!;
    if (a.rejected || a.endedAt < firstFinished) continue;
    attempts.splice(i, 1);
    overlapped++;
  }
  const ok = lines.filter((l) => !l.error);
  const byFault: SoakRun['byFault'] = {};
  for (const a of attempts) {
    const f = (byFault[`${a.fault}@${a.target}`] ??= { injected: 0, rejected: 0, outcomes: {} });
    f.injected++;
    if (a.rejected) f.rejected++;
    f.outcomes[a.outcome] = (f.outcomes[a.outcome] ?? 0) + 1;
  }
  const r0 = ok.find((l) => l.rank === 0);
  const workersOk = result.exitCode === 0 && ok.length === worldSize && lines.length === worldSize;
  const collectives = Number(r0?.collectives ?? 0);
  const seconds = Number(r0?.seconds ?? 0);
  const rejected = attempts.filter((a) => a.rejected).length;
  return {
    worldSize,
    collectives,
    wrong: ok.reduce((s, l) => s + Number(l.wrong), 0) + (workersOk ? 0 : 1),
    wrongExamples: [
      ...ok.flatMap((l) => l.wrongExamples as string[]),
      ...lines.filter((l) => l.error).map((l) => JSON.stringify(l.error)),
    ],
    seconds,
    collectivesPerSec: seconds > 0 ? collectives / seconds : 0,
    byKind: (r0?.byKind as Record<string, number>) ?? {},
    faultsInjected: attempts.length,
    faultsOverlappingShutdown: overlapped,
    faultsRejected: rejected,
    faultsSurvived: workersOk ? rejected : 0,
    byFault,
    loggedRejections: (stderr.text.match(/rejected a connection|closing connection|dropping malformed HTTP/g) ?? [])
      .length,
    exitCode: result.exitCode,
    workersOk,
    hung: hang.signal.aborted,
  };
}

function soakOptions(): SoakOptions & { json: string } {
  const a = benchArgs(import.meta.url, {
    ranks: { type: 'string', default: '2,3,4' },
    collectives: { type: 'string', default: '3000' },
    seconds: { type: 'string', default: '60' },
    'max-delay-ms': { type: 'string', default: '5' },
    'max-elems': { type: 'string', default: String(1 << 18) },
    seed: { type: 'string', default: '1' },
    'fault-rate': { type: 'string', default: '10' },
    json: { type: 'string', default: resultPath('soak') },
  });
  return {
    ranks: a.ranks.split(',').map(Number),
    collectives: Number(a.collectives),
    seconds: Number(a.seconds),
    maxDelayMs: Number(a['max-delay-ms']),
    maxElems: Number(a['max-elems']),
    seed: Number(a.seed),
    faultRate: Number(a['fault-rate']),
    json: a.json,
  };
}

async function main(): Promise<void> {
  const o = soakOptions();
  const runs: SoakRun[] = [];
  const t0 = Date.now();
  for (const n of o.ranks) runs.push(await soakOne(n, o));
  const pad = (s: string | number, w: number) => String(s).padStart(w);
  console.log(
    `${pad('ranks', 5)} ${pad('collectives', 11)} ${pad('wrong', 5)} ${pad('coll/s', 7)} ` +
      `${pad('faults', 6)} ${pad('rejected', 8)} ${pad('survived', 8)} ${pad('logged', 6)} ${pad('exit', 4)}`,
  );
  for (const r of runs) {
    console.log(
      `${pad(r.worldSize, 5)} ${pad(r.collectives, 11)} ${pad(r.wrong, 5)} ` +
        `${pad(r.collectivesPerSec.toFixed(1), 7)} ${pad(r.faultsInjected, 6)} ${pad(r.faultsRejected, 8)} ` +
        `${pad(r.faultsSurvived, 8)} ${pad(r.loggedRejections, 6)} ${pad(r.exitCode, 4)}`,
    );
  }
  const total = {
    collectives: runs.reduce((s, r) => s + r.collectives, 0),
    wrong: runs.reduce((s, r) => s + r.wrong, 0),
    faultsInjected: runs.reduce((s, r) => s + r.faultsInjected, 0),
    faultsSurvived: runs.reduce((s, r) => s + r.faultsSurvived, 0),
  };
  console.log(
    `total: ${total.collectives} collectives, ${total.wrong} wrong, ` +
      `${total.faultsInjected} faults injected, ${total.faultsSurvived} survived`,
  );
  mkdirSync(dirname(o.json), { recursive: true });
  const { json, ...options } = o;
  // The code the run exercised: the commit, and any uncommitted change to the comm package.
  const git = (args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: fileURLToPath(new URL('../..', import.meta.url)),
        encoding: 'utf8',
      }).trim();
    } catch {
      return null;
    }
  };
  const code = {
    commit: git(['rev-parse', 'HEAD']),
    uncommittedComm: git(['status', '--short', 'packages/comm'])?.split('\n').filter(Boolean) ?? null,
  };
  writeFileSync(
    json,
    JSON.stringify(
      {
        benchmark: 'soak',
        date: new Date().toISOString(),
        wallSeconds: (Date.now() - t0) / 1000,
        loadavg: loadavg(),
        code,
        options,
        total,
        runs,
      },
      null,
      2,
    ) + '\n',
  );
  if (total.wrong > 0 || total.faultsSurvived < total.faultsInjected) process.exitCode = 1;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
