// The ProcessGroup of DESIGN.md: the public collectives, in issue order, with failures that
// reach every rank. This class is the facade: it checks the arguments and names each call
// (group/calls.ts), runs it alone with world size 1, and otherwise hands it to the ring group
// (group/ring-group.ts), which orders the calls, tags and checks their messages, watches the
// neighbours' liveness and turns the first failure into the same typed error on every rank.
// Point to point (group/p2p.ts) runs beside the ring on links opened on demand; newGroup
// (group/subgroups.ts) builds a group of its own ring. All of them share the job's failure.
// With several nodes of several ranks, the world group's large all-reduces run hierarchically
// (group/hierarchy.ts), as the node layout learnt at the rendezvous allows (group/node-layout.ts).
import { resolveOptions, type InitOptions, type ResolvedOptions } from './env.ts';
import { ConfigError, ZeroringError } from './errors.ts';
import { getLogger, type Logger } from '@zeroring/core';
import {
  allGatherCall,
  allReduceCall,
  barrierCall,
  broadcastCall,
  checkF32,
  reduceScatterCall,
  type CallSpec,
  type ReduceOptions,
} from './group/calls.ts';
import { Hierarchy } from './group/hierarchy.ts';
import { JobFailure } from './group/job-failure.ts';
import { describeLayout, planLayout, type NodeLayout } from './group/node-layout.ts';
import { PointToPoint } from './group/p2p.ts';
import { RingGroup } from './group/ring-group.ts';
import { checkGroupRanks, connectSubRing, type GroupNet } from './group/subgroups.ts';
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
  let layout: NodeLayout;
  try {
    layout = planLayout(rdzv.nodes);
  } catch (e) {
    // Every rank read the same records, so every rank refuses alike: nobody waits for a ring.
    await rdzv.ring.close();
    rdzv.store.close();
    await rdzv.storeServer?.close();
    throw e;
  }
  const how = layout.hierarchical ? 'hierarchical' : `flat ring (${layout.flatBecause})`;
  log.debug(
    { worldSize: o.worldSize, layout: describeLayout(layout.nodes) },
    `process group ready; all-reduce: ${how}`,
  );
  const { store, prefix, bindHost, advertiseHost } = rdzv;
  const net: GroupNet = { store, prefix, bindHost, advertiseHost, job: new JobFailure(), nodeOf: layout.nodeOf };
  const hier = layout.hierarchical ? new Hierarchy({ ...o, net, log }, layout) : null;
  return new ProcessGroup(o, log, rdzv.ring, net, rdzv.store, rdzv.storeServer, undefined, hier);
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly timeoutMs: number;
  /** The ranks of this group in its parent's numbering, in order (0..worldSize-1 for the world). */
  readonly ranks: readonly number[];
  private readonly smallAllReduceBytes: number;
  private readonly group: RingGroup | null;
  private p2p: PointToPoint | null = null;
  private readonly children: ProcessGroup[] = [];
  private groupsCreated = 0;
  private destroyed = false;

  /** @internal use initProcessGroup() */
  constructor(
    private readonly o: ResolvedOptions,
    private readonly log: Logger,
    ring: RingTransport | null,
    /** How this group reaches the job's network (null: world size 1, no network). */
    private readonly net: GroupNet | null = null,
    /** The rendezvous store, still connected (for tools that coordinate through it). */
    readonly store: StoreClient | null = null,
    private readonly storeServer: StoreServer | null = null,
    ranks?: number[],
    /** The hierarchical all-reduce's rings (the world group over several nodes), else null. */
    private readonly hier: Hierarchy | null = null,
  ) {
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.timeoutMs = o.timeoutMs;
    this.ranks = ranks ?? Array.from({ length: o.worldSize }, (_, i) => i);
    this.smallAllReduceBytes = o.smallAllReduceBytes;
    this.group = ring && net ? new RingGroup({ ...o, job: net.job }, log, ring) : null;
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

  /**
   * Payload bytes this group's collectives have sent so far (message headers and point-to-point
   * sends not counted), on this group's ring and, for a hierarchical all-reduce, on the node
   * rings: what a collective costs on the wire is the difference across it. 0 with world size 1.
   */
  get bytesSent(): number {
    const h = this.hier?.bytesSent();
    return (this.group?.bytesSent ?? 0) + (h ? h.node + h.across : 0);
  }

  /**
   * bytesSent split by whether the receiving rank runs on another node (interNode) or on this
   * one (intraNode), by the node layout learnt at the rendezvous.
   */
  bytesSentByNode(): { interNode: number; intraNode: number } {
    const out = { interNode: 0, intraNode: 0 };
    const nodeOf = this.net?.nodeOf;
    if (!this.group || !nodeOf) return out;
    const next = this.ranks[(this.rank + 1) % this.worldSize]!;
    const across = nodeOf[next] !== nodeOf[this.ranks[this.rank]!];
    out[across ? 'interNode' : 'intraNode'] += this.group.bytesSent;
    const h = this.hier?.bytesSent();
    if (h) {
      out.intraNode += h.node;
      out.interNode += h.across;
    }
    return out;
  }

  /**
   * Where this group's ranks run, as learnt at the rendezvous: how many nodes, and whether its
   * large float32 all-reduces run hierarchically (only the world group's do).
   */
  get topology(): { nodes: number; hierarchical: boolean } {
    const nodeOf = this.net?.nodeOf;
    return {
      nodes: nodeOf ? new Set(this.ranks.map((r) => nodeOf[r])).size : 1,
      hierarchical: this.hier !== null,
    };
  }

  /**
   * In place: buf becomes the elementwise reduction of every rank's buf. Any length. With
   * `wire: 'bfloat16' | 'float16'` the ring carries 16-bit values (half the bytes) and buf ends
   * as 16-bit values on every rank (collectives/allreduce-half.ts).
   */
  async allReduce(buf: Float32Array, opts: ReduceOptions = {}): Promise<void> {
    return this.run(allReduceCall(buf, opts, this.smallAllReduceBytes, this.hier));
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
   * Sends buf to rank dst, which receives it with recv(buf, this rank). The k-th send to dst
   * pairs with dst's k-th recv from this rank; their lengths must be equal. Resolves once the
   * data has left (buf may be reused).
   */
  async send(buf: Float32Array, dst: number): Promise<void> {
    return this.isend(buf, dst);
  }

  /** Receives into buf what rank src sends to this rank (see send). */
  async recv(buf: Float32Array, src: number): Promise<void> {
    return this.irecv(buf, src);
  }

  /**
   * send without awaiting: the returned promise is the send. Runs beside this group's
   * collectives and other point-to-point calls; buf must stay unchanged until it resolves.
   */
  isend(buf: Float32Array, dst: number): Promise<void> {
    return this.peerCall('send', buf, dst, (p) => p.isend(buf, dst));
  }

  /** recv without awaiting: the returned promise is the recv; buf is written until it resolves. */
  irecv(buf: Float32Array, src: number): Promise<void> {
    return this.peerCall('recv', buf, src, (p) => p.irecv(buf, src));
  }

  /**
   * A group of the given ranks (this group's numbering), with ranks 0..k-1 in the order given
   * and collectives of its own that run concurrently with this group's. As in torch, every
   * rank of this group calls newGroup with the same list, in the same order as its other
   * newGroup calls; a rank not in the list gets null (torch's non-member handle, which it
   * cannot use either).
   */
  async newGroup(ranks: number[]): Promise<ProcessGroup | null> {
    const list = checkGroupRanks(ranks, this.worldSize);
    const id = this.groupsCreated++;
    if (this.destroyed) throw new ZeroringError(`process group destroyed on rank ${this.rank}; cannot run newGroup`);
    const rank = list.indexOf(this.rank);
    if (rank < 0) return null;
    const o = { ...this.o, rank, worldSize: list.length };
    const log = this.log.child({ group: `${this.net?.prefix ?? ''}sub${id}`, groupRank: rank });
    const global = list.map((r) => this.ranks[r]!);
    if (list.length === 1 || !this.net) return new ProcessGroup(o, log, null, null, null, null, global);
    const net = { ...this.net, prefix: `${this.net.prefix}sub${id}/` };
    const ring = await connectSubRing({ ...o, net, log });
    const child = new ProcessGroup(o, log, ring, net, null, null, global);
    this.children.push(child);
    return child;
  }

  /**
   * Closes every connection (and the store, on the rank hosting it) so the process can exit,
   * the groups made by newGroup first. Calls still pending are rejected. Safe to call more
   * than once, and after a failure.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const child of this.children.splice(0)) await child.destroy();
    await this.p2p?.close(this.timeoutMs);
    await this.group?.close(this.timeoutMs);
    // After the world ring: its calls are over, so nothing runs on the node rings any more.
    await this.hier?.close(this.timeoutMs);
    this.store?.close();
    await this.storeServer?.close();
  }

  private peerCall(
    kind: 'send' | 'recv',
    buf: Float32Array,
    peer: number,
    go: (p: PointToPoint) => Promise<void>,
  ): Promise<void> {
    try {
      checkF32(kind, 'buf', buf);
      const who = kind === 'send' ? 'dst' : 'src';
      if (!Number.isInteger(peer) || peer < 0 || peer >= this.worldSize || peer === this.rank) {
        const want = `0..${this.worldSize - 1} other than this rank (${this.rank})`;
        throw new ConfigError(`${kind}: ${who}=${peer} is out of range, expected ${want}`);
      }
      if (this.destroyed) throw new ZeroringError(`process group destroyed on rank ${this.rank}; cannot run ${kind}`);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const net = this.net!;
    if (net.job.error) return Promise.reject(net.job.error);
    this.p2p ??= new PointToPoint({
      links: { ...this.o, ...net, log: this.log },
      chunkBytes: this.o.chunkBytes,
      job: net.job,
    });
    return go(this.p2p);
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
