// Tensor memory on the CPU backends (cpu, wasm), read and written without fresh ArrayBuffers:
// the attention kernel's copies in and out (~10 MB per tiny-GPT step) started a full V8 collection
// every step, which took CPU from the other rank when two share two cores. runHostKernel lets a
// JavaScript kernel use its inputs and outputs in place; copyToHost reads a tensor into a buffer
// the caller reuses (DDP's gradient buckets).
// Details: docs/internals.md#host-memory
import * as tf from '@tensorflow/tfjs-core';

/** What this module uses of tfjs-backend-wasm's BackendWasm (public methods of its class). */
interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
}

const isWasmHeapBackend = (b: tf.KernelBackend): b is tf.KernelBackend & WasmHeapBackend =>
  typeof (b as Partial<WasmHeapBackend>).makeOutput === 'function' &&
  typeof (b as Partial<WasmHeapBackend>).typedArrayFromHeap === 'function';

export const HOST_MEMORY_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm']);

/**
 * Calls kernel(inputs, outputs) with the float32 values of `inputs` (to read only) and
 * zero-filled arrays for new float32 tensors of `outputShapes` (to fill), and returns those
 * tensors. The arrays are valid only during the call: on wasm they are views of a heap that a
 * later allocation may grow and move, so the kernel must not keep them or run tfjs ops.
 */
export function runHostKernel(
  inputs: readonly tf.Tensor[],
  outputShapes: readonly number[][],
  kernel: (ins: Float32Array[], outs: Float32Array[]) => void,
): tf.Tensor[] {
  const backendName = tf.getBackend();
  if (!HOST_MEMORY_BACKENDS.has(backendName))
    throw new Error(
      'runHostKernel needs a host-memory backend ' +
        `(${[...HOST_MEMORY_BACKENDS].join(', ')}), the active one is ${backendName}`,
    );
  for (const t of inputs) {
    if (t.dtype !== 'float32')
      throw new TypeError(`runHostKernel reads float32 tensors, got ${t.dtype} of shape [${t.shape}]`);
  }
  const backend = tf.backend();
  if (isWasmHeapBackend(backend)) {
    // Allocate every output before taking any view: allocating may grow the heap and detach views.
    const infos = outputShapes.map((shape) => backend.makeOutput([...shape], 'float32'));
    const outs = infos.map((info) => backend.typedArrayFromHeap(info) as Float32Array);
    for (const o of outs) o.fill(0); // malloc'd, not cleared
    kernel(
      inputs.map((t) => backend.typedArrayFromHeap(t) as Float32Array),
      outs,
    );
    return infos.map((info) => tf.engine().makeTensorFromTensorInfo(info, backend));
  }
  // The cpu backend keeps each tensor's values as a typed array; readSync hands out that array.
  const outs = outputShapes.map((shape) => new Float32Array(shape.reduce((a, b) => a * b, 1)));
  kernel(
    inputs.map((t) => backend.readSync(t.dataId) as Float32Array),
    outs,
  );
  return outs.map((values, i) => tf.tensor(values, outputShapes[i], 'float32'));
}

/** Copies the float32 values of `t` (on a host-memory backend) into `out`, which must fit them. */
export function copyToHost(t: tf.Tensor, out: Float32Array): Float32Array {
  if (t.dtype !== 'float32' || out.length < t.size)
    throw new TypeError(
      'copyToHost reads a float32 tensor into a buffer of at least ' +
        `its size, got ${t.dtype} of ${t.size} values into ${out.length}`,
    );
  const backend = tf.backend();
  const values = isWasmHeapBackend(backend) ? backend.typedArrayFromHeap(t) : backend.readSync(t.dataId);
  out.set(values as Float32Array);
  return out;
}
