// Counts of the work a WebGPU device is given: compute dispatches, queue submissions and
// GPU->CPU read-backs (count, bytes, and the time spent waiting for them). They are counted on
// the GPUDevice that initWebGPU creates, below tfjs, so every kernel (tfjs's own and ours)
// shows up; the figures are the same on lavapipe and on a real GPU, which makes them the
// figures to drive down where no GPU is at hand. Details: docs/gpu.md.

/** Cumulative counts since the device was created. */
export interface GpuWorkCounts {
  dispatches: number;
  submissions: number;
  readbacks: number;
  readbackBytes: number;
  /** Wall time during which at least one read-back was pending (the CPU waiting on the GPU). */
  waitMs: number;
}

const counts: GpuWorkCounts = { dispatches: 0, submissions: 0, readbacks: 0, readbackBytes: 0, waitMs: 0 };
let pending = 0;
let pendingSince = 0;

/** A copy of the counts so far (all zero before a WebGPU device exists). */
export function gpuWorkCounts(): GpuWorkCounts {
  const now = { ...counts };
  if (pending > 0) now.waitMs += performance.now() - pendingSince;
  return now;
}

/** b - a, field by field: the work between two snapshots. */
export function gpuWorkBetween(a: GpuWorkCounts, b: GpuWorkCounts): GpuWorkCounts {
  return {
    dispatches: b.dispatches - a.dispatches,
    submissions: b.submissions - a.submissions,
    readbacks: b.readbacks - a.readbacks,
    readbackBytes: b.readbackBytes - a.readbackBytes,
    waitMs: b.waitMs - a.waitMs,
  };
}

function countPass(pass: GPUComputePassEncoder): GPUComputePassEncoder {
  const dispatch = pass.dispatchWorkgroups;
  pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, ...args) {
    counts.dispatches += 1;
    return dispatch.apply(this, args);
  };
  return pass;
}

function countEncoder(encoder: GPUCommandEncoder): GPUCommandEncoder {
  const begin = encoder.beginComputePass;
  encoder.beginComputePass = function (this: GPUCommandEncoder, ...args) {
    return countPass(begin.apply(this, args));
  };
  return encoder;
}

function countMapRead(buffer: GPUBuffer): GPUBuffer {
  const map = buffer.mapAsync;
  buffer.mapAsync = function (this: GPUBuffer, ...args) {
    counts.readbacks += 1;
    counts.readbackBytes += args[2] ?? buffer.size - (args[1] ?? 0);
    if (pending++ === 0) pendingSince = performance.now();
    const done = (): void => {
      if (--pending === 0) counts.waitMs += performance.now() - pendingSince;
    };
    return map.apply(this, args).finally(done);
  };
  return buffer;
}

/** Wraps `device` in place so that its work is counted; returns it. */
export function countDeviceWork(device: GPUDevice): GPUDevice {
  const createEncoder = device.createCommandEncoder;
  device.createCommandEncoder = function (this: GPUDevice, ...args) {
    return countEncoder(createEncoder.apply(this, args));
  };
  const createBuffer = device.createBuffer;
  device.createBuffer = function (this: GPUDevice, descriptor: GPUBufferDescriptor) {
    const buffer = createBuffer.call(this, descriptor);
    return descriptor.usage & GPUBufferUsage.MAP_READ ? countMapRead(buffer) : buffer;
  };
  const queue = device.queue;
  const submit = queue.submit;
  queue.submit = function (this: GPUQueue, buffers: Iterable<GPUCommandBuffer>) {
    counts.submissions += 1;
    return submit.call(this, buffers);
  };
  return device;
}
