// The hierarchical all-reduce of the world group, for L ranks on each of M nodes (Horovod's
// hierarchical allreduce, in its reduce-scatter form): a reduce-scatter within the node (rank j
// of the node then holds slice j, summed over the node), an all-reduce of that slice across the
// nodes among the M ranks with the same j, and an all-gather within the node. Each rank sends
// 1/L of a node-level all-reduce over its own inter-node link, all L at once; the node's links
// get the rest, in shared memory where the transport can. The two rings (the node's, and the
// one across nodes) are set up on first use, through the store under the group's prefix.
// Details: docs/internals.md#hierarchical-all-reduce
import type { Logger } from '@zeroring/core';
import { allGatherInPlace } from '../collectives/allgather.ts';
import { AllReduce } from '../collectives/allreduce.ts';
import { reduceScatterInPlace } from '../collectives/reducescatter.ts';
import { scale } from '../collectives/reduce-ops.ts';
import { scheduleError, type Collective, type ReduceOp, type RingPort } from '../collectives/types.ts';
import { ZeroringError } from '../errors.ts';
import type { NodeLayout } from './node-layout.ts';
import { RingGroup } from './ring-group.ts';
import { connectSubRing, type SubRingOptions } from './subgroups.ts';

/** What a sub-ring needs (subgroups.ts), for the world group whose all-reduce this runs. */
export type HierarchyOptions = SubRingOptions;

interface Rings {
  /** The ranks of this rank's node, numbered in rank order. */
  node: RingGroup;
  /** The ranks with this rank's place in their node, one per node, numbered by node. */
  across: RingGroup;
}

export class Hierarchy {
  /** This rank's place in its node (its rank in the node's ring) and its node's index. */
  readonly local: number;
  readonly nodeIndex: number;
  readonly ranksPerNode: number;
  private rings: Promise<Rings> | null = null;
  private settledRings: Rings | null = null;
  private closed = false;

  constructor(
    private readonly o: HierarchyOptions,
    readonly layout: NodeLayout,
  ) {
    this.nodeIndex = layout.nodeOf[o.rank]!;
    this.local = layout.nodes[this.nodeIndex]!.indexOf(o.rank);
    this.ranksPerNode = layout.nodes[0]!.length;
  }

  /** The world group's collective for one all-reduce (its call is the user's, as the flat ring's). */
  allReduce(port: RingPort, buf: Float32Array, op: ReduceOp): Collective {
    return new HierarchicalAllReduce(port, this, buf, op);
  }

  /** Payload bytes sent on the node's ring and on the ring across nodes. */
  bytesSent(): { node: number; across: number } {
    const r = this.settledRings;
    return { node: r?.node.bytesSent ?? 0, across: r?.across.bytesSent ?? 0 };
  }

  /** The three steps, once the world ring has checked that the neighbours made the same call. */
  async run(buf: Float32Array, op: ReduceOp): Promise<void> {
    const { node, across } = await this.connect();
    // avg sums all the way and scales once, where the slice is complete (as the flat ring does).
    const sumOp: ReduceOp = op === 'avg' ? 'sum' : op;
    const n = buf.length;
    const L = this.ranksPerNode;
    await node.enqueue({ kind: 'reduceScatter', op: sumOp, count: n, dtype: 'float32' }, (p) => {
      return reduceScatterInPlace(p, buf, sumOp);
    });
    // Slice `local` as the node's reduce-scatter cut it (plan.ts).
    const slice = buf.subarray(Math.floor((this.local * n) / L), Math.floor(((this.local + 1) * n) / L));
    await across.enqueue({ kind: 'allReduce', op: sumOp, count: slice.length, dtype: 'float32' }, (p) => {
      return new AllReduce(p, slice, sumOp);
    });
    if (op === 'avg') scale(slice, 1 / this.o.worldSize);
    await node.enqueue({ kind: 'allGather', count: n, dtype: 'float32' }, (p) => allGatherInPlace(p, buf));
  }

  /**
   * Closes both rings (after the world group: nothing runs on them any more). A setup still
   * under way is not waited for: it closes what it made once done (setUp).
   */
  async close(timeoutMs: number): Promise<void> {
    this.closed = true;
    const rings = this.settledRings;
    if (!rings) return;
    await Promise.all([rings.node.close(timeoutMs), rings.across.close(timeoutMs)]);
  }

  /** Both rings, set up the first time (each rank is in one of each, so all set up together). */
  private connect(): Promise<Rings> {
    this.rings ??= this.setUp();
    return this.rings;
  }

  private async setUp(): Promise<Rings> {
    const { o, layout } = this;
    const nodeRanks = layout.nodes[this.nodeIndex]!;
    const acrossRanks = layout.nodes.map((ranks) => ranks[this.local]!);
    const ring = (tag: string, ranks: number[]) => {
      const rank = ranks.indexOf(o.rank);
      const log = o.log.child({ group: `${o.net.prefix}${tag}`, groupRank: rank });
      const net = { ...o.net, prefix: `${o.net.prefix}${tag}/` };
      const sub = { ...o, net, log, rank, worldSize: ranks.length };
      return { made: connectSubRing(sub), sub };
    };
    const parts = [ring(`hier/node${this.nodeIndex}`, nodeRanks), ring(`hier/across${this.local}`, acrossRanks)];
    const made = await Promise.allSettled(parts.map((p) => p.made));
    const failed = made.find((m) => m.status === 'rejected');
    if (failed || this.closed) {
      // One ring came up, the other did not (or the group was destroyed meanwhile): close what did.
      for (const m of made) if (m.status === 'fulfilled') await m.value.close();
      throw failed ? (failed as PromiseRejectedResult).reason : new ZeroringError('process group destroyed');
    }
    const [node, across] = made.map((m, i) => {
      const transport = (m as PromiseFulfilledResult<Awaited<ReturnType<typeof connectSubRing>>>).value;
      const { sub } = parts[i]!;
      const group = new RingGroup({ ...sub, job: o.net.job }, sub.log, transport);
      transport.setRef(false);
      return group;
    }) as [RingGroup, RingGroup];
    o.log.debug({ node: nodeRanks, across: acrossRanks }, 'hierarchical all-reduce rings ready');
    this.settledRings = { node, across };
    return this.settledRings;
  }
}

/**
 * On the world ring, the hierarchical all-reduce is one call among the others, in call order:
 * each rank sends its next rank an empty message with the call's tags and waits for its previous
 * rank's, so a mismatched call fails as CollectiveMismatchError before any data moves (the
 * neighbours check each other all round the ring); then the work runs on the node's ring and
 * the ring across nodes (delegated), and the call completes when they are done. Their failures
 * are the job's, so they fail this call too.
 */
class HierarchicalAllReduce implements Collective {
  expecting = 1;
  delegated = false;

  constructor(
    private readonly port: RingPort,
    private readonly h: Hierarchy,
    private readonly buf: Float32Array,
    private readonly op: ReduceOp,
  ) {}

  start(): void {
    this.port.send(0, 0, new Float32Array(0));
  }

  onChunk(step: number, chunk: number, data: Float32Array): void {
    if (step !== 0 || chunk !== 0 || data.length !== 0 || this.expecting !== 1) {
      throw scheduleError(`hierarchical all-reduce check step ${step} chunk ${chunk} (${data.length} elements)`);
    }
    this.expecting = 0;
    this.delegated = true;
    this.h.run(this.buf, this.op).then(
      () => {
        this.delegated = false;
        this.port.settled(this);
      },
      (e: unknown) => this.port.settled(this, e),
    );
  }
}
