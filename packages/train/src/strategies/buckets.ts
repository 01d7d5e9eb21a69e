// Gradient buckets for DDP: which parameters travel together in one all-reduce.
//
// Like torch's Reducer, parameters are grouped in the order backward produces their gradients
// (the engine emits blocks in reverse, each parameter once at the lowest block that uses it), and
// a bucket is closed once it holds at least `bucketBytes`. Because fill order equals emission
// order, buckets complete one after the other, 0 first — every rank therefore issues its
// all-reduces in the same order without agreeing on anything at run time, and the first bucket
// (the last blocks) can be on the wire while backward still works on the early blocks.
//
// Each bucket is one flat float32 buffer: a parameter's gradient occupies [offset, offset+size).
// One buffer per bucket means one device read-back and one upload per bucket instead of one per
// tensor, which matters on backends where each transfer has a fixed cost.
import { paramCount, type BlockModel } from '../model.ts';

/** torch.nn.parallel.DistributedDataParallel's default bucket_cap_mb. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

export interface BucketSlot {
  name: string;
  shape: number[];
  /** Bucket holding this parameter's gradient. */
  bucket: number;
  /** Element offset inside the bucket's flat buffer. */
  offset: number;
  size: number;
}

export interface Bucket {
  index: number;
  /** Parameters in emission order (their slots, offsets increasing). */
  slots: BucketSlot[];
  /** Float32 elements in the flat buffer. */
  elems: number;
}

export interface BucketPlan {
  buckets: Bucket[];
  slotOf: Map<string, BucketSlot>;
  /** Elements over all buckets (the model's distinct parameter count). */
  totalElems: number;
}

export class BucketError extends Error {
  override name = 'BucketError';
}

/**
 * Parameter names in the order the blockwise engine emits their gradients: blocks from last to
 * first; within a block the parameters that block is the lowest user of, in the block's order.
 */
export function gradientOrder(model: BlockModel): Array<{ name: string; shape: number[] }> {
  const lowest = new Map<string, number>();
  model.blocks.forEach((b, i) => {
    for (const p of b.params) if (!lowest.has(p.name)) lowest.set(p.name, i);
  });
  const out: Array<{ name: string; shape: number[] }> = [];
  for (let i = model.blocks.length - 1; i >= 0; i--) {
    for (const p of model.blocks[i].params) if (lowest.get(p.name) === i) out.push({ name: p.name, shape: [...p.shape] });
  }
  return out;
}

/** Greedy buckets of at least `bucketBytes` (the last may be smaller), in gradient order. */
export function planBuckets(model: BlockModel, bucketBytes: number = DEFAULT_BUCKET_BYTES): BucketPlan {
  if (!Number.isFinite(bucketBytes) || bucketBytes < 4) throw new BucketError(`bucketBytes ${bucketBytes} is invalid, expected a number >= 4 (bytes of one float32)`);
  const buckets: Bucket[] = [];
  const slotOf = new Map<string, BucketSlot>();
  let current: Bucket | undefined;
  let totalElems = 0;
  for (const p of gradientOrder(model)) {
    if (!current) {
      current = { index: buckets.length, slots: [], elems: 0 };
      buckets.push(current);
    }
    const size = paramCount(p);
    const slot: BucketSlot = { name: p.name, shape: p.shape, bucket: current.index, offset: current.elems, size };
    current.slots.push(slot);
    current.elems += size;
    totalElems += size;
    slotOf.set(p.name, slot);
    if (current.elems * 4 >= bucketBytes) current = undefined;
  }
  return { buckets, slotOf, totalElems };
}
