// A process group over the ring (world size 2 or more): its calls run in issue order
// (op-queue.ts), their data is tagged and checked (data-path.ts), a watchdog judges liveness
// (watchdog.ts), and this class decides how the group ends. Failure: the first error is final and
// is passed round as an abort, so every rank rejects with the same typed error. Clean leave: a
// neighbour's destroy() is no failure until a call needs that neighbour (then PeerLostError).
// The failure is the job's (job-failure.ts): a subgroup's failure fails the world ring too.
// Details: docs/internals.md#ring-group
import type { Logger } from '@zeroring/core';
import type { Collective, Payload, RingPort } from '../collectives/types.ts';
import { describeCall, fromWire, PeerLostError, toWire, ZeroringError } from '../errors.ts';
import { CloseCode } from '../transport/conn.ts';
import type { RingTransport, Side } from '../transport/ring.ts';
import { MsgType, type Header } from '../transport/wire.ts';
import { DataPath } from './data-path.ts';
import type { JobFailure } from './job-failure.ts';
import { OpQueue, type NewCall } from './op-queue.ts';
import { GroupState } from './state.ts';
import { Watchdog } from './watchdog.ts';

export interface RingGroupOptions {
  rank: number;
  timeoutMs: number;
  chunkBytes: number;
  /** The job's failure, shared with the other groups and point-to-point links of this process. */
  job: JobFailure;
}

export class RingGroup {
  private readonly state: GroupState;
  private readonly ops: OpQueue;
  private readonly data: DataPath;
  private readonly watchdog: Watchdog;
  private readonly job: JobFailure;
  private readonly leaveJob: () => void;

  constructor(
    o: RingGroupOptions,
    private readonly log: Logger,
    private readonly ring: RingTransport,
  ) {
    const fail = (e: ZeroringError) => this.fail(e);
    this.job = o.job;
    this.leaveJob = o.job.join(fail);
    this.state = new GroupState(o.rank);
    this.ops = new OpQueue(ring, this.state, (op) => this.data.start(op));
    this.data = new DataPath(o.chunkBytes, ring, this.state, this.ops, fail);
    // Before attach(), which delivers at once what arrived during setup (an abort among it).
    this.watchdog = new Watchdog(ring, this.state, this.ops, o.timeoutMs, fail);
    ring.attach({
      payloadTarget: (h, bytes) => this.data.payloadTarget(h, bytes),
      onData: (h, p) => this.data.onData(h, p),
      onControl: (h, side) => this.onControl(h, side),
      onLost: (side, rank, reason, clean) => this.onLost(side, rank, reason, clean),
    });
  }

  enqueue(call: NewCall, make: (p: RingPort) => Collective<Payload>): Promise<void> {
    if (this.state.failure) return Promise.reject(this.state.failure);
    return this.ops.enqueue(call, make);
  }

  /**
   * Rejects the calls still pending and closes the links. Gracefully unless the group failed:
   * the bye and the close frame follow our last chunks, and the links stay open until each
   * neighbour's ws has answered the close, i.e. has read everything we sent. Only a neighbour
   * that stays silent for the whole timeout is cut off.
   */
  async close(timeoutMs: number): Promise<void> {
    this.leaveJob();
    this.state.destroyed = true;
    this.watchdog.stop();
    for (const op of this.ops.drain()) {
      const why = `process group destroyed on rank ${this.state.rank} while ${describeCall(op.call)} was pending`;
      op.reject(new ZeroringError(why));
    }
    if (this.state.failure) {
      await this.ring.close(CloseCode.abort, 'abort');
    } else {
      this.ring.sendControl({ t: MsgType.Bye, from: this.state.rank });
      await this.ring.close(CloseCode.normal, 'destroy', timeoutMs);
    }
  }

  private onControl(h: Header, side: Side): void {
    if (this.state.destroyed) return;
    if (h.t === MsgType.Abort) {
      this.fail(fromWire(h.e));
    } else if (h.t === MsgType.Bye) {
      const rank = side === 'prev' ? this.ring.prevRank : this.ring.nextRank;
      this.onLost(side, rank, 'it called destroy()', true);
    }
  }

  private onLost(side: Side, rank: number, reason: string, clean: boolean): void {
    const s = this.state;
    // After a bye, the close that follows is no news (even if the socket is cut rather than closed).
    if (s.destroyed || s.failure || s.left[side]) return;
    const running = this.ops.running;
    const e = new PeerLostError(rank, running ? describeCall(running.call) : null, reason, s.rank);
    if (!clean) return this.fail(e);
    this.log.debug({ peer: rank, reason }, 'neighbour left');
    s.left[side] = e;
    // Everything the previous rank sent has arrived: a call still waiting for more never gets it.
    if (side === 'prev' && running?.coll && running.coll.expecting > 0) this.fail(s.lostFor(running.call, 'prev'));
  }

  private fail(e: ZeroringError): void {
    if (this.state.failure || this.state.destroyed) return;
    this.state.failure = e;
    this.log.error({ err: e.message, kind: e.name }, 'process group failed');
    const pending = this.ops.drain();
    this.data.clear();
    for (const op of pending) op.reject(e);
    this.broadcastFailure(e);
    this.job.fail(e);
  }

  /** Tells both neighbours (they pass it on), then closes the links so the process can exit. */
  private broadcastFailure(e: ZeroringError): void {
    this.watchdog.stop();
    this.ring.sendControl({ t: MsgType.Abort, e: toWire(e), from: this.state.rank });
    void this.ring.close(CloseCode.abort, 'abort').catch(() => undefined);
  }

  /** Payload bytes this group's collectives have sent to the next rank. */
  get bytesSent(): number {
    return this.ring.payloadBytesSent;
  }

  /** How large payloads travel on each ring link. */
  get links(): { prev: 'shm' | 'tcp'; next: 'shm' | 'tcp' } {
    return this.ring.links;
  }
}
