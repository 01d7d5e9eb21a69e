// One attempt of the local worker group: spawn a process per local rank, relay their output, and
// when one fails stop the others (SIGTERM, then SIGKILL after a grace period), as torchrun's
// agent does. Each worker leads its own process group, so a signal reaches whatever it spawned
// too, and a Ctrl-C in the terminal reaches the workers once (through us), not twice.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { pipeLines } from './line-prefixer.ts';

export interface WorkerExit {
  rank: number;
  localRank: number;
  /** Exit code when the worker exited by itself, else null. */
  exitCode: number | null;
  /** Signal that ended the worker, else null. */
  signal: NodeJS.Signals | null;
}

export interface GroupResult {
  /** 'succeeded': every worker exited 0; 'failed': a worker failed first; 'stopped': stop() came first. */
  outcome: 'succeeded' | 'failed' | 'stopped';
  /** The first worker that failed (outcome 'failed'). */
  failure?: WorkerExit;
  exits: WorkerExit[];
}

export interface WorkerSpec {
  rank: number;
  localRank: number;
  command: string;
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface GroupIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  linePrefix: (rank: number) => string;
  gracePeriodMs: number;
  /** Called once, as soon as the first worker fails (before the others are stopped). */
  onFailure?: (failure: WorkerExit) => void;
}

/** Human words for how a worker ended: "exit code 3" or "signal SIGKILL". */
export function describeExit(e: WorkerExit): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.exitCode ?? 'unknown'}`;
}

/** Shell convention for a process's status: its code, or 128 + the signal's number. */
export function statusCode(e: Pick<WorkerExit, 'exitCode' | 'signal'>): number {
  if (e.signal) return 128 + (osConstants.signals[e.signal] ?? 0);
  return e.exitCode ?? 1;
}

interface Worker {
  spec: WorkerSpec;
  child: ChildProcess;
  exit?: WorkerExit;
  closed: Promise<void>;
}

export class WorkerGroup {
  readonly done: Promise<GroupResult>;
  private readonly workers: Worker[] = [];
  private outcome: GroupResult['outcome'] | undefined;
  private failure: WorkerExit | undefined;
  private killTimer: NodeJS.Timeout | undefined;
  private resolveDone!: (r: GroupResult) => void;

  constructor(
    specs: readonly WorkerSpec[],
    private readonly io: GroupIo,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    // Workers lead their own process groups, so they would outlive a launcher that dies of an
    // uncaught error; 'exit' still runs then, and takes them along.
    process.on('exit', this.killOnExit);
    for (const spec of specs) this.workers.push(this.startWorker(spec));
  }

  private readonly killOnExit = (): void => {
    for (const w of this.workers) killGroup(w.child, 'SIGKILL');
  };

  /** Stop every live worker with `signal` (SIGKILL follows after the grace period). */
  stop(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.outcome ??= 'stopped';
    this.signalAll(signal);
    if (signal !== 'SIGKILL' && !this.killTimer) {
      this.killTimer = setTimeout(() => this.signalAll('SIGKILL'), this.io.gracePeriodMs);
    }
  }

  private startWorker(spec: WorkerSpec): Worker {
    const child = spawn(spec.command, [...spec.argv], {
      cwd: spec.cwd,
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const prefix = this.io.linePrefix(spec.rank);
    const outputs = Promise.all([
      pipeLines(child.stdout!, this.io.stdout, prefix),
      pipeLines(child.stderr!, this.io.stderr, prefix),
    ]);
    const worker: Worker = { spec, child, closed: Promise.resolve() };
    worker.closed = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        this.onExit(worker, { rank: spec.rank, localRank: spec.localRank, exitCode: code, signal });
        void outputs.then(() => resolve());
      });
      // A worker that could not be spawned at all (ENOENT, EACCES) never emits 'exit'.
      child.once('error', (err) => {
        if (child.pid !== undefined) return;
        this.io.stderr.write(`${prefix}could not start worker: ${err.message}\n`);
        this.onExit(worker, { rank: spec.rank, localRank: spec.localRank, exitCode: 127, signal: null });
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve();
      });
    });
    return worker;
  }

  private onExit(worker: Worker, exit: WorkerExit): void {
    if (worker.exit) return;
    worker.exit = exit;
    const failed = exit.signal !== null || exit.exitCode !== 0;
    if (failed && this.outcome === undefined) {
      this.outcome = 'failed';
      this.failure = exit;
      this.io.onFailure?.(exit);
      this.stop('SIGTERM');
    }
    if (this.workers.every((w) => w.exit)) void this.finish();
  }

  private async finish(): Promise<void> {
    if (this.killTimer) clearTimeout(this.killTimer);
    process.off('exit', this.killOnExit);
    // Leaders are gone; anything they left behind in their process groups goes with them.
    for (const w of this.workers) killGroup(w.child, 'SIGKILL');
    await Promise.all(this.workers.map((w) => w.closed));
    const exits = this.workers.map((w) => w.exit!);
    this.resolveDone({ outcome: this.outcome ?? 'succeeded', failure: this.failure, exits });
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const w of this.workers) if (!w.exit) killGroup(w.child, signal);
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already empty.
  }
}
