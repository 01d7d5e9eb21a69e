// The order of a process group's collective calls. A call is numbered when it is issued and
// queued; calls run strictly one after the other, so DDP may fire one allReduce per bucket
// without awaiting the previous. The number travels in every message of the call (see
// data-path.ts): it tells a message for a call not started yet from one for a call finished.
//
// A call completes when its collective expects nothing more and the socket has taken what it
// sent: the user's buffer may be read by the socket until then.
import type { Collective, CollectiveKind, Payload, RingPort } from '../collectives/types.ts';
import type { CollectiveCall } from '../errors.ts';
import type { RingTransport } from '../transport/ring.ts';
import type { GroupState } from './state.ts';

/** A call as issued, before it is numbered. */
export type NewCall = Omit<CollectiveCall, 'seq'> & { kind: CollectiveKind };

export interface Op {
  call: CollectiveCall & { kind: CollectiveKind };
  make: (port: RingPort) => Collective<Payload>;
  resolve: () => void;
  reject: (e: Error) => void;
  coll?: Collective<Payload>;
  completing?: boolean;
  lastProgress: number;
}

/** Builds and starts an op's collective; false when that failed the group. */
export type StartOp = (op: Op) => boolean;

export class OpQueue {
  private nextSeq = 0;
  private nextRunSeq = 0;
  private readonly queue: Op[] = [];
  private current: Op | null = null;

  constructor(
    private readonly ring: RingTransport,
    private readonly state: GroupState,
    private readonly start: StartOp,
  ) {}

  /** The call running now. */
  get running(): Op | null {
    return this.current;
  }

  enqueue(call: NewCall, make: (p: RingPort) => Collective<Payload>): Promise<void> {
    const full = { ...call, seq: this.nextSeq++, op: call.op ?? '' };
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ call: full, make, resolve, reject, lastProgress: Date.now() });
      this.pump();
    });
  }

  /** Whether sequence number q belongs to a call this rank has not started yet. */
  isAhead(q: unknown): boolean {
    const cur = this.current;
    return typeof q === 'number' && q >= (cur ? cur.call.seq + 1 : this.nextRunSeq);
  }

  /** Completes op once its collective expects nothing more (here or elsewhere) and its sends have left. */
  maybeComplete(op: Op): void {
    if (op.completing || op.coll!.expecting > 0 || op.coll!.delegated) return;
    op.completing = true;
    // The user's buffer may still be read by the socket: hand it back only once sent.
    const flushed = this.ring.flushed();
    if (!flushed) return this.finish(op);
    flushed.then(() => this.finish(op));
  }

  /** Takes out every call not completed, the running one first, for the caller to reject. */
  drain(): Op[] {
    const pending = [...(this.current ? [this.current] : []), ...this.queue.splice(0)];
    this.current = null;
    return pending;
  }

  private pump(): void {
    while (!this.current && !this.state.failure && this.queue.length > 0) {
      const op = this.queue.shift()!;
      this.current = op;
      this.nextRunSeq = op.call.seq + 1;
      op.lastProgress = Date.now();
      this.ring.setRef(true);
      // A failed start failed the group, which has taken the queue and closes the links.
      if (!this.start(op)) return;
      if (this.current === op) this.maybeComplete(op);
    }
    // Idle: let the process exit if the user forgets destroy().
    if (!this.current) this.ring.setRef(false);
  }

  private finish(op: Op): void {
    if (this.current !== op) return;
    this.current = null;
    op.resolve();
    this.pump();
  }
}
