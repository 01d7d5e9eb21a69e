// Liveness of a ring process group: a timer pings both neighbours, fails a neighbour silent
// for longer than the timeout, and fails a collective that made no progress for that long; it
// runs, whatever left, for as long as any call is pending.
//
// A timer can only fire late after a long synchronous stretch of our own; the verdict is
// therefore re-checked after the event loop has read the sockets (setImmediate), so our own
// stall is never blamed on a peer.
import { CommTimeoutError, describeCall, PeerLostError, type ZeroringError } from '../errors.ts';
import type { RingTransport } from '../transport/ring.ts';
import type { OpQueue } from './op-queue.ts';
import type { GroupState } from './state.ts';

export class Watchdog {
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly ring: RingTransport,
    private readonly state: GroupState,
    private readonly ops: OpQueue,
    private readonly timeoutMs: number,
    private readonly fail: (e: ZeroringError) => void,
  ) {
    const every = Math.max(50, Math.min(1000, Math.floor(timeoutMs / 4)));
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    if (this.state.failure || this.state.destroyed) return;
    this.ring.ping();
    if (!this.verdict()) return;
    // Re-judge after the poll phase has read whatever arrived while we were busy.
    setImmediate(() => {
      if (this.state.failure || this.state.destroyed) return;
      const e = this.verdict();
      if (e) this.fail(e);
    });
  }

  /** The error that a silent neighbour or a stalled call means now, if any. */
  private verdict(): ZeroringError | null {
    const now = Date.now();
    const sil = this.ring.silence(now);
    const running = this.ops.running;
    for (const side of ['prev', 'next'] as const) {
      // A neighbour that left is silent for good; a call that needs it fails on its own.
      if (!this.state.left[side] && sil[side] > this.timeoutMs) {
        const rank = side === 'prev' ? this.ring.prevRank : this.ring.nextRank;
        const why = `silent for ${sil[side]} ms, no data or heartbeat (hung, stopped or cut off)`;
        return new PeerLostError(rank, running ? describeCall(running.call) : null, why, this.state.rank);
      }
    }
    // Work delegated to other groups is judged by their watchdogs (their calls time out there).
    if (running && !running.coll?.delegated && now - running.lastProgress > this.timeoutMs) {
      return new CommTimeoutError(
        `${describeCall(running.call)} made no progress for ${now - running.lastProgress} ms on rank ` +
          `${this.state.rank} (timeout ${this.timeoutMs} ms); ` +
          `waiting for rank ${this.ring.prevRank} (did every rank issue this collective?)`,
        this.timeoutMs,
        this.state.rank,
      );
    }
    return null;
  }
}
