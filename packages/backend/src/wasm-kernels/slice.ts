// Slice for the wasm backend, reading the source in place.
//
// The stock kernel starts with backend.readSync(x), which copies the WHOLE source out of the
// wasm heap (HEAPU8.slice) before copying the slice: O(size of x) per slice. Splitting a
// tensor into n pieces (unstack of q/k/v, split, the gradient of concat, per-bucket views of
// a flat gradient) thus costs n full copies. Here the source is a typed-array view of the
// heap (no copy), and only the slice's rows are copied. Strings keep the stock kernel.
import {
  slice_util,
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export function inPlaceSliceConfig(stock: KernelConfig): KernelConfig {
  const kernelFunc = (args: { inputs: { x: TensorInfo }; backend: BackendWasm; attrs: NamedAttrMap }) => {
    const {
      inputs: { x },
      backend,
      attrs,
    } = args;
    if (x.dtype === 'string') return stock.kernelFunc(args as unknown as Parameters<KernelFunc>[0]);
    const [begin, size] = slice_util.parseSliceParams(
      x,
      attrs.begin as number | number[],
      attrs.size as number | number[],
    );
    const out = backend.makeOutput(size, x.dtype);
    // Views after makeOutput: allocating may grow the heap and detach earlier views.
    const xv = backend.typedArrayFromHeap(x);
    const ov = backend.typedArrayFromHeap(out);
    const strides = util.computeStrides(x.shape);
    if (slice_util.isSliceContinous(x.shape, begin, size)) {
      const from = slice_util.computeFlatOffset(begin, strides);
      ov.set(xv.subarray(from, from + ov.length));
      return out;
    }
    // Copy row by row along the last axis; an odometer walks the outer indices.
    const rank = x.shape.length;
    const row = size[rank - 1]!;
    const outer = size.slice(0, -1);
    const idx = new Array<number>(rank - 1).fill(0);
    const rows = util.sizeFromShape(outer);
    for (let r = 0, o = 0; r < rows; r++, o += row) {
      let from = begin[rank - 1]!;
      for (let d = 0; d < rank - 1; d++) from += (begin[d]! + idx[d]!) * strides[d]!;
      ov.set(xv.subarray(from, from + row), o);
      for (let d = rank - 2; d >= 0; d--) {
        if (++idx[d]! < outer[d]!) break;
        idx[d] = 0;
      }
    }
    return out;
  };
  return { ...stock, kernelFunc: kernelFunc as unknown as KernelFunc, [IN_PLACE]: true } as KernelConfig;
}

const IN_PLACE = Symbol.for('zeroring.inPlaceSlice');

export function isInPlaceSlice(config: KernelConfig | undefined): boolean {
  return Boolean(config && (config as unknown as Record<symbol, unknown>)[IN_PLACE]);
}
