// What a point-to-point call is (group/p2p.ts), how it reads in errors, and the watch that fails
// a call pending with no progress for the timeout (the watchdog's rule for collectives, with its
// re-check after the sockets were read, so that our own stall is never blamed on a peer).
import { CollectiveMismatchError, CommTimeoutError, describeCall, type ZeroringError } from '../errors.ts';

export interface P2pOp {
  kind: 'send' | 'recv';
  seq: number;
  peer: number;
  buf: Float32Array;
  /** Last progress (issue, or a chunk received): the timeout counts from here. */
  since: number;
  /** recv: chunks still to come. */
  chunksLeft: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class P2pWatch {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly rank: number,
    private readonly timeoutMs: number,
    /** The calls waiting for their peer (sends not matched, recvs not complete). */
    private readonly waiting: () => P2pOp[],
    private readonly fail: (e: ZeroringError) => void,
  ) {}

  start(): void {
    const every = Math.max(50, Math.min(1000, Math.floor(this.timeoutMs / 4)));
    this.timer ??= setInterval(() => this.tick(), every);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    if (!this.stalled()) return;
    setImmediate(() => {
      const op = this.stalled();
      if (!op || !this.timer) return;
      const ms = Date.now() - op.since;
      const other = op.kind === 'send' ? 'post the matching recv' : 'call the matching send';
      this.fail(
        new CommTimeoutError(
          `${describe(op)} made no progress for ${ms} ms on rank ${this.rank} (timeout ${this.timeoutMs} ms); ` +
            `did rank ${op.peer} ${other}?`,
          this.timeoutMs,
          this.rank,
        ),
      );
    });
  }

  private stalled(): P2pOp | undefined {
    const now = Date.now();
    return this.waiting().find((op) => now - op.since > this.timeoutMs);
  }
}

export function describe(op: P2pOp): string {
  const call = describeCall({ seq: op.seq, kind: op.kind, count: op.buf.length, dtype: 'float32' });
  return `${call} ${op.kind === 'send' ? 'to' : 'from'} rank ${op.peer}`;
}

/** This rank's call and the peer's, as the mismatch error shows them. */
export function sizeMismatch(rank: number, op: P2pOp, theirCount: number): CollectiveMismatchError {
  const theirs = op.kind === 'send' ? 'recv' : 'send';
  const [from, to] = op.kind === 'send' ? [rank, op.peer] : [op.peer, rank];
  return new CollectiveMismatchError(
    rank,
    { seq: op.seq, kind: op.kind, count: op.buf.length, dtype: 'float32' },
    op.peer,
    { seq: op.seq, kind: theirs, count: theirCount, dtype: 'float32' },
    `the k-th send from rank ${from} to rank ${to} pairs with the k-th recv on rank ${to} from rank ${from}, ` +
      'and their lengths must be equal',
  );
}
