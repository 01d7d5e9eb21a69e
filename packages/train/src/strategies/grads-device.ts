// Gradients as device tensors, one per parameter, for the replicated strategies: DeviceGrads is
// where the complete gradient of a step collects before the optimizer takes it, with its memory
// accounted; LocalGrads is the reducer of a single process, which reduces nothing and sums each
// backward's gradients into DeviceGrads as the engine hands them over.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensors } from '../model.ts';
import type { Allocation, MemoryTracker } from '../memory.ts';

export class DeviceGrads {
  private readonly grads = new Map<string, tf.Tensor>();
  private readonly allocs = new Map<string, Allocation>();

  constructor(private readonly mem: MemoryTracker) {}

  /** Adds `g` (owned from here) to the parameter's gradient: micro-batches are summed. */
  add(name: string, g: tf.Tensor): void {
    const prev = this.grads.get(name);
    if (prev) {
      this.grads.set(name, tf.add(prev, g));
      prev.dispose();
      g.dispose();
    } else {
      this.grads.set(name, g);
      this.allocs.set(name, this.mem.alloc('grads', 'device', 4 * g.size, name));
    }
  }

  has(name: string): boolean {
    return this.grads.has(name);
  }

  get(name: string): tf.Tensor | undefined {
    return this.grads.get(name);
  }

  values(): IterableIterator<tf.Tensor> {
    return this.grads.values();
  }

  /** Every gradient multiplied by `factor` (tf.mul's float32 rounding). */
  scale(factor: number): void {
    for (const [name, g] of this.grads) {
      this.grads.set(name, tf.mul(g, factor));
      g.dispose();
    }
  }

  /** Frees every gradient (the optimizer consumed them, or the step is dropped). */
  clear(): void {
    for (const g of this.grads.values()) g.dispose();
    this.grads.clear();
    for (const a of this.allocs.values()) this.mem.free(a);
    this.allocs.clear();
  }
}
