// torch's bf16_compress_hook and fp16_compress_hook: the bucket goes over the ring as 16-bit
// floats (a 16-bit all-reduce, collectives/allreduce-half.ts), half the bytes of float32, and
// comes back as the 16-bit values every rank received. As torch, each rank first divides its
// gradient by the world size, so the sum the ring builds is already the average and never grows
// past the largest gradient: float16 ends at 65504, and a sum of n gradients would overflow n
// times sooner. What still overflows (a gradient near float16's range) comes back as Inf on every
// rank alike, so every rank redoes that bucket in float32 from a copy of its input: a float16
// overflow costs a second all-reduce, never a step. bfloat16 has float32's range and needs no copy.
import type { CommHook, GradBucket, HookGroup } from './types.ts';

function divide(buf: Float32Array, n: number): void {
  const s = 1 / n;
  for (let i = 0; i < buf.length; i++) buf[i]! *= s;
}

function allFinite(buf: Float32Array): boolean {
  for (let i = 0; i < buf.length; i++) if (!Number.isFinite(buf[i])) return false;
  return true;
}

export const bf16CompressHook: CommHook = async (bucket: GradBucket, group: HookGroup) => {
  const buf = bucket.buffer;
  divide(buf, group.worldSize);
  await group.allReduce(buf, { op: 'sum', wire: 'bfloat16' });
  return buf;
};

export const fp16CompressHook: CommHook = async (bucket: GradBucket, group: HookGroup) => {
  const buf = bucket.buffer;
  const input = buf.slice();
  divide(buf, group.worldSize);
  await group.allReduce(buf, { op: 'sum', wire: 'float16' });
  if (allFinite(buf)) return buf;
  // The result is bit-identical on every rank, so every rank takes this branch together. A
  // non-finite input stays non-finite in float32 too, for the non-finite guard to see.
  buf.set(input);
  await group.allReduce(buf, { op: 'avg' });
  return buf;
};
