// UnsortedSegmentSum for the wasm backend: out[segmentIds[i], ...] += x[i, ...].
//
// tfjs-backend-wasm ships no kernel for it, yet the gradient of `gather` (every embedding
// lookup) is an UnsortedSegmentSum, so without it training fails on wasm. tfjs's CPU kernel
// builds one masked sum per segment (O(numSegments · size), i.e. vocab × batch work); this
// one is a single pass over x, reading and writing typed-array views of the wasm heap in
// place, so no tensor leaves the backend. Ids outside [0, numSegments) are dropped, as in
// TensorFlow. Sums accumulate in the output's own precision, as TensorFlow's kernel does.
import { util, type KernelConfig, type NamedTensorInfoMap, type TensorInfo } from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

function unsortedSegmentSum(args: {
  inputs: NamedTensorInfoMap;
  backend: BackendWasm;
  attrs: { numSegments: number };
}): TensorInfo {
  const { x, segmentIds } = args.inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = args.attrs;
  const { backend } = args;
  const idsRank = segmentIds.shape.length;
  util.assert(
    util.arraysEqual(segmentIds.shape, x.shape.slice(0, idsRank)),
    () => `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must be a prefix of x shape [${x.shape}]`,
  );
  const outShape = [numSegments, ...x.shape.slice(idsRank)];
  const out = backend.makeOutput(outShape, x.dtype);
  // Views are taken after makeOutput: allocating may grow the heap and detach older views.
  const outVals = backend.typedArrayFromHeap(out);
  const xVals = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  outVals.fill(0);
  const inner = util.sizeFromShape(x.shape.slice(idsRank));
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= numSegments) continue;
    const src = i * inner;
    const dst = id * inner;
    for (let j = 0; j < inner; j++) outVals[dst + j] += xVals[src + j];
  }
  return out;
}

export const unsortedSegmentSumConfig: KernelConfig = {
  kernelName: 'UnsortedSegmentSum',
  backendName: 'wasm',
  kernelFunc: unsortedSegmentSum as unknown as KernelConfig['kernelFunc'],
};
