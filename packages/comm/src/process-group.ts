// The ProcessGroup of DESIGN.md: the public collectives, in issue order, with failures that
// reach every rank. This class is the facade: it checks the arguments and names each call
// (group/calls.ts), runs it alone with world size 1, and otherwise hands it to the ring group
// (group/ring-group.ts), which orders the calls, tags and checks their messages, watches the
// neighbours' liveness and turns the first failure into the same typed error on every rank.
import { resolveOptions, type InitOptions, type ResolvedOptions } from './env.ts';
import { ZeroringError } from './errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import {
  allGatherCall,
  allReduceCall,
  barrierCall,
  broadcastCall,
  reduceScatterCall,
  type CallSpec,
  type ReduceOptions,
} from './group/calls.ts';
import { RingGroup } from './group/ring-group.ts';
import { rendezvous } from './rendezvous.ts';
import type { StoreClient } from './store/client.ts';
import type { StoreServer } from './store/server.ts';
import type { RingTransport } from './transport/ring.ts';
import { reportUncaughtZeroringErrors } from './uncaught.ts';

export type { ReduceOptions } from './group/calls.ts';

export async function initProcessGroup(opts: InitOptions = {}): Promise<ProcessGroup> {
  reportUncaughtZeroringErrors();
  const o = resolveOptions(opts);
  const log = getLogger({ component: 'comm', ...(process.env.RANK === undefined ? { rank: o.rank } : {}) });
  if (o.worldSize === 1) return new ProcessGroup(o, log, null);
  const rdzv = await rendezvous(o, log);
  log.debug({ worldSize: o.worldSize }, 'process group ready');
  return new ProcessGroup(o, log, rdzv.ring, rdzv.store, rdzv.storeServer);
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  private readonly smallAllReduceBytes: number;
  private readonly group: RingGroup | null;
  private destroyed = false;

  /** @internal use initProcessGroup() */
  constructor(
    o: ResolvedOptions,
    log: Logger,
    ring: RingTransport | null,
    /** The rendezvous store, still connected (for tools that coordinate through it). */
    readonly store: StoreClient | null = null,
    private readonly storeServer: StoreServer | null = null,
  ) {
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.timeoutMs = o.timeoutMs;
    this.smallAllReduceBytes = o.smallAllReduceBytes;
    this.group = ring ? new RingGroup(o, log, ring) : null;
    if (ring) {
      // Idle: let the process exit if the user forgets destroy(); ref'd while a call runs.
      ring.setRef(false);
      store?.setRef(false);
      storeServer?.setRef(false);
    }
  }

  /**
   * How large payloads travel on each ring link: 'shm' (shared memory, both ends on this
   * machine) or 'tcp'; null with world size 1.
   */
  get links(): { prev: 'shm' | 'tcp'; next: 'shm' | 'tcp' } | null {
    return this.group?.links ?? null;
  }

  /** In place: buf becomes the elementwise reduction of every rank's buf. Any length. */
  async allReduce(buf: Float32Array, opts: ReduceOptions = {}): Promise<void> {
    return this.run(allReduceCall(buf, opts, this.smallAllReduceBytes));
  }

  /** output = this rank's segment of the reduction of every rank's input; input.length = worldSize * output.length. */
  async reduceScatter(input: Float32Array, output: Float32Array, opts: ReduceOptions = {}): Promise<void> {
    return this.run(reduceScatterCall(input, output, opts, this.worldSize));
  }

  /** output = every rank's input concatenated in rank order; output.length = worldSize * input.length. */
  async allGather(input: Float32Array, output: Float32Array): Promise<void> {
    return this.run(allGatherCall(input, output, this.worldSize));
  }

  /** buf on every rank becomes root's buf. */
  async broadcast(buf: Float32Array, root: number): Promise<void> {
    return this.run(broadcastCall(buf, root, this.worldSize));
  }

  /** Resolves once every rank has entered the barrier. */
  async barrier(): Promise<void> {
    return this.run(barrierCall());
  }

  /**
   * Closes every connection (and the store, on the rank hosting it) so the process can exit.
   * Calls still pending are rejected. Safe to call more than once, and after a failure.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    await this.group?.close(this.timeoutMs);
    this.store?.close();
    await this.storeServer?.close();
  }

  private run({ call, make, alone }: CallSpec): Promise<void> {
    if (this.group === null) {
      if (this.destroyed) return Promise.reject(new ZeroringError('process group destroyed'));
      alone();
      return Promise.resolve();
    }
    if (this.destroyed) {
      const why = `process group destroyed on rank ${this.rank}; cannot run ${call.kind}`;
      return Promise.reject(new ZeroringError(why));
    }
    return this.group.enqueue(call, make);
  }
}
