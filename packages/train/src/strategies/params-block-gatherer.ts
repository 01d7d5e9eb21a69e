// Gathering a block's parameters from every rank's shard (ZeRO-3's placement, params-gathered.ts):
// before a block runs, all-gather the partition groups it reads (its own, plus e.g. the embedding
// group for the GPT head's tied wte), and free them after. The engine's acquire order is fixed, so
// the next block's all-gather is issued at once (prefetch). Groups are reference-counted, so a
// group two held blocks read is gathered once.
// Details: docs/internals.md#block-gatherer
import * as tf from '@tensorflow/tfjs-core';
import type { BlockModel, NamedTensors } from '../model.ts';
import type { Phase } from '../engine.ts';
import type { FlatPartition } from '../partition.ts';
import type { Allocation, MemoryTracker } from '../memory.ts';
import { StrategyError } from '../strategy.ts';
import type { IssueQueue } from './issue-queue.ts';

export interface GatherComm {
  allGather(input: Float32Array, output: Float32Array): Promise<unknown>;
}

interface Gathered {
  refs: number;
  ready: Promise<Map<string, tf.Tensor>>;
  tensors?: Map<string, tf.Tensor>;
  alloc: Allocation;
}

export class BlockGatherer {
  private readonly live = new Map<number, Gathered>();
  /** Blocks whose groups are held by a prefetch that no acquire has taken over yet. */
  private readonly prefetched = new Set<number>();
  /** Groups held by each acquired block (acquire → release). */
  private readonly held = new Map<number, number>();
  gathers = 0;
  acquires = 0;
  /** Acquires whose groups had all landed already (the prefetch hid the gather completely). */
  prefetchHits = 0;

  constructor(
    private readonly model: BlockModel,
    private readonly part: FlatPartition,
    private readonly comm: GatherComm,
    private readonly queue: IssueQueue,
    /** The rank's current parameter shard (read when a gather is issued). */
    private readonly shard: () => Float32Array,
    private readonly mem: MemoryTracker,
  ) {}

  async acquire(block: number, phase: Phase): Promise<NamedTensors> {
    const L = this.model.blocks.length;
    if (!Number.isInteger(block) || block < 0 || block >= L) {
      throw new StrategyError(`acquire of block ${block}, expected 0..${L - 1}`);
    }
    if (this.prefetched.has(block)) this.prefetched.delete(block);
    else this.hold(block);
    this.held.set(block, (this.held.get(block) ?? 0) + 1);
    const next = phase === 'forward' ? block + 1 : block - 1;
    if (next >= 0 && next < L && !this.prefetched.has(next)) {
      this.hold(next);
      this.prefetched.add(next);
      // One turn of the event loop lets the process group start the prefetch (its ring sends
      // this rank's segment now) before the block's compute blocks the thread; the peers' parts
      // then arrive while this one computes and are read at the engine's next yield.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.acquires++;
    if (this.part.blockGroups[block].every((g) => this.live.get(g)!.tensors)) this.prefetchHits++;
    const out: NamedTensors = {};
    for (const g of this.part.blockGroups[block]) {
      const tensors = await this.live.get(g)!.ready;
      for (const [name, t] of tensors) out[name] = t;
    }
    return out;
  }

  release(block: number): void {
    const n = this.held.get(block);
    if (!n) throw new StrategyError(`release of block ${block}, which is not acquired`);
    if (n === 1) this.held.delete(block);
    else this.held.set(block, n - 1);
    this.drop(block);
  }

  /** Drop prefetches nobody took (e.g. after a failed forward); waits for their gathers. */
  async settle(): Promise<void> {
    for (const b of [...this.prefetched]) {
      this.prefetched.delete(b);
      for (const g of this.part.blockGroups[b]) await this.live.get(g)?.ready.catch(() => undefined);
      this.drop(b);
    }
  }

  /** Anything still gathered (0 between steps). */
  get liveGroups(): number {
    return this.live.size;
  }

  private hold(block: number): void {
    for (const g of this.part.blockGroups[block]) {
      const have = this.live.get(g);
      if (have) {
        have.refs++;
        continue;
      }
      const grp = this.part.groups[g];
      const out = new Float32Array(grp.paddedLength);
      const alloc = this.mem.alloc('gathered', 'device', 4 * grp.paddedLength, grp.name);
      const entry: Gathered = { refs: 1, alloc, ready: Promise.resolve(new Map()) };
      this.gathers++;
      const mine = this.shard().subarray(grp.shardOffset, grp.shardOffset + grp.shardLength);
      entry.ready = this.queue
        .issue(mine, (input) => this.comm.allGather(input, out))
        .then(() => {
          const tensors = new Map<string, tf.Tensor>();
          for (const [name, view] of this.part.groupViews(g, out)) {
            tensors.set(name, tf.tensor(view, this.part.slot(name).shape, 'float32'));
          }
          // Freed before the gather landed (a failed step): nothing may keep these.
          if (this.live.get(g) !== entry) tf.dispose([...tensors.values()]);
          else entry.tensors = tensors;
          return tensors;
        });
      entry.ready.catch(() => undefined);
      this.live.set(g, entry);
    }
  }

  private drop(block: number): void {
    for (const g of this.part.blockGroups[block]) {
      const e = this.live.get(g);
      if (!e) continue;
      if (--e.refs > 0) continue;
      this.live.delete(g);
      this.mem.free(e.alloc);
      if (e.tensors) tf.dispose([...e.tensors.values()]);
    }
  }
}
