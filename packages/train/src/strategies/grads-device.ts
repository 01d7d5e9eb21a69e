// Gradients as device tensors for the replicated strategies: DeviceGrads is where the complete
// gradient of a step collects before the optimizer takes it, with its memory accounted. It holds
// one tensor per parameter as the engine emits them and, where the optimizer updates a flat group
// (optim-flat.ts), possibly the whole gradient as one flat tensor in the group's layout: a reducer
// whose reduced gradient is on the host assembles it there and uploads it once, instead of one
// tensor per parameter that the optimizer would only concatenate again.
import * as tf from '@tensorflow/tfjs-core';
import type { Allocation, MemoryTracker } from '../memory.ts';
import type { FlatLayout } from './flat-layout.ts';

export class DeviceGrads {
  private readonly grads = new Map<string, tf.Tensor>();
  private readonly allocs = new Map<string, Allocation>();
  private flat?: { tensor?: tf.Tensor; alloc: Allocation };
  /** The flat optimizer's layout, when the optimizer takes the gradient flat. */
  flatLayout?: FlatLayout;

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

  /** Adds a whole gradient laid out as `flatLayout` (owned from here). */
  addFlat(g: tf.Tensor): void {
    const prev = this.flat?.tensor;
    if (this.flat && prev) {
      this.flat.tensor = tf.add(prev, g);
      prev.dispose();
      g.dispose();
    } else {
      this.flat = { tensor: g, alloc: this.mem.alloc('grads', 'device', 4 * g.size, 'flat gradient') };
    }
  }

  has(name: string): boolean {
    return this.flat !== undefined || this.grads.has(name);
  }

  get(name: string): tf.Tensor | undefined {
    return this.grads.get(name);
  }

  values(): IterableIterator<tf.Tensor> {
    return this.grads.values();
  }

  /**
   * The whole gradient as one flat tensor in `layout` order, owned by the caller: the per-parameter
   * tensors concatenated (one concat, a few kernels), plus the flat part if any. Every parameter
   * must have its gradient (has()).
   */
  flatten(layout: FlatLayout): tf.Tensor {
    const flat = this.flat?.tensor;
    if (this.flat) this.flat.tensor = undefined; // handed over; the allocation lasts until clear()
    if (this.grads.size === 0) return flat!;
    const cat = tf.tidy(() => tf.concat(layout.slots.map((s) => tf.reshape(this.grads.get(s.name)!, [-1]))));
    if (!flat) return cat;
    const sum = tf.add(flat, cat);
    tf.dispose([flat, cat]);
    return sum;
  }

  /** Every gradient multiplied by `factor` (tf.mul's float32 rounding). */
  scale(factor: number): void {
    for (const [name, g] of this.grads) {
      this.grads.set(name, tf.mul(g, factor));
      g.dispose();
    }
    const flat = this.flat?.tensor;
    if (this.flat && flat) {
      this.flat.tensor = tf.mul(flat, factor);
      flat.dispose();
    }
  }

  /** Frees every gradient (the optimizer consumed them, or the step is dropped). */
  clear(): void {
    for (const g of this.grads.values()) g.dispose();
    this.grads.clear();
    for (const a of this.allocs.values()) this.mem.free(a);
    this.allocs.clear();
    if (this.flat) {
      this.flat.tensor?.dispose();
      this.mem.free(this.flat.alloc);
      this.flat = undefined;
    }
  }
}
