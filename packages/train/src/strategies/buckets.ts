// Gradient buckets for DDP: which parameters travel together in one all-reduce. As torch's
// Reducer: filled in the order backward emits gradients, so buckets complete in order on every rank
// and the first can be on the wire while backward goes on. A smaller first bucket and closing at
// block boundaries make that overlap real on small models; one flat buffer per bucket means one
// read-back and one upload each.
// Details: docs/internals.md#buckets
import { paramCount, type BlockModel } from '../model.ts';

/** torch.nn.parallel.DistributedDataParallel's default bucket_cap_mb. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;
/** torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES: the cap of the first bucket (the last blocks). */
export const DEFAULT_FIRST_BUCKET_BYTES = 1024 * 1024;

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

/** A parameter in gradient order, with the block whose backward emits it. */
export interface OrderedParam {
  name: string;
  shape: number[];
  block: number;
}

/**
 * Parameter names in the order the blockwise engine emits their gradients: blocks from last to
 * first; within a block the parameters that block is the lowest user of, in the block's order.
 */
export function gradientOrder(model: BlockModel): OrderedParam[] {
  const lowest = new Map<string, number>();
  model.blocks.forEach((b, i) => {
    for (const p of b.params) if (!lowest.has(p.name)) lowest.set(p.name, i);
  });
  const out: OrderedParam[] = [];
  for (let i = model.blocks.length - 1; i >= 0; i--) {
    for (const p of model.blocks[i].params) {
      if (lowest.get(p.name) === i) out.push({ name: p.name, shape: [...p.shape], block: i });
    }
  }
  return out;
}

export interface BucketCaps {
  /** Cap of every bucket after the first; default DEFAULT_BUCKET_BYTES (25 MiB). */
  bucketBytes?: number;
  /** Cap of the first bucket; default DEFAULT_FIRST_BUCKET_BYTES (1 MiB), never above bucketBytes. */
  firstBucketBytes?: number;
}

function checkCap(what: string, bytes: number): void {
  if (!Number.isFinite(bytes) || bytes < 4) {
    throw new BucketError(`${what} ${bytes} is invalid, expected a number >= 4 (bytes of one float32)`);
  }
}

/**
 * Buckets in gradient order: a bucket closes once it holds its cap (firstBucketBytes for bucket 0,
 * bucketBytes after), or earlier at a block boundary when the next block would take it past the
 * cap. The last bucket may be smaller. A number instead of caps is bucketBytes (older signature).
 */
export function planBuckets(model: BlockModel, caps: BucketCaps | number = {}): BucketPlan {
  const { bucketBytes = DEFAULT_BUCKET_BYTES, firstBucketBytes = DEFAULT_FIRST_BUCKET_BYTES } =
    typeof caps === 'number' ? { bucketBytes: caps } : caps;
  checkCap('bucketBytes', bucketBytes);
  checkCap('firstBucketBytes', firstBucketBytes);
  const capOf = (index: number) => (index === 0 ? Math.min(firstBucketBytes, bucketBytes) : bucketBytes);
  const order = gradientOrder(model);
  const blockElems = new Map<number, number>();
  for (const p of order) blockElems.set(p.block, (blockElems.get(p.block) ?? 0) + paramCount(p));
  const buckets: Bucket[] = [];
  const slotOf = new Map<string, BucketSlot>();
  let current: Bucket | undefined;
  let totalElems = 0;
  let prevBlock: number | undefined;
  for (const p of order) {
    // A new block that would take the open bucket past its cap starts a new bucket.
    const grownBytes = current ? (current.elems + blockElems.get(p.block)!) * 4 : 0;
    if (current && p.block !== prevBlock && current.elems > 0 && grownBytes > capOf(current.index)) {
      current = undefined;
    }
    prevBlock = p.block;
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
    if (current.elems * 4 >= capOf(current.index)) current = undefined;
  }
  return { buckets, slotOf, totalElems };
}
