// The figures of a training step that live on the device (the loss of each micro-batch, the
// gradient norm and the non-finite flag of the optimizer) read back to the host together, once,
// at the end of the step. Every read-back waits for the device to finish what came before it, so
// one read per step is one wait per step; reading each figure where it is made would stall the
// step as many times (and, on WebGPU, in the middle of work the device could overlap).
//
// Whoever makes a figure adds its tensor and gets a promise of its values; the trainer flushes
// the readout after the step's last kernel is enqueued: one concat, one read-back.
import * as tf from '@tensorflow/tfjs-core';

interface Entry {
  tensor: tf.Tensor;
  resolve(values: Float32Array): void;
}

export class StepReadout {
  private entries: Entry[] = [];

  /** Reads `t` (owned from here) at the flush; resolves with its values, flattened. */
  add(t: tf.Tensor): Promise<Float32Array> {
    return new Promise<Float32Array>((resolve) => this.entries.push({ tensor: t, resolve }));
  }

  /** Figures waiting for the flush. */
  get size(): number {
    return this.entries.length;
  }

  /**
   * One read-back of every figure added so far; resolves their promises. When the read fails,
   * it throws and the promises stay pending (as after dispose()).
   */
  async flush(): Promise<void> {
    const entries = this.entries;
    this.entries = [];
    if (entries.length === 0) return;
    const tensors = entries.map((e) => e.tensor);
    const packed =
      tensors.length === 1 ? tensors[0] : tf.tidy(() => tf.concat(tensors.map((t) => tf.reshape(t, [-1]))));
    let values: Float32Array;
    try {
      values = (await packed.data()) as Float32Array;
    } finally {
      tf.dispose([...tensors, packed]);
    }
    let off = 0;
    for (const e of entries) {
      e.resolve(values.subarray(off, off + e.tensor.size));
      off += e.tensor.size;
    }
  }

  /**
   * Frees what was never flushed (a step that failed part way). Its promises stay pending: the
   * step's failure is what its caller sees, not one rejection per figure.
   */
  dispose(): void {
    tf.dispose(this.entries.map((e) => e.tensor));
    this.entries = [];
  }
}
