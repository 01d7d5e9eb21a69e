// Token stream with a seeded train/validation split and batches of random windows. The split is
// by position (a seeded choice of equal chunks), so overlapping windows cannot leak validation
// text, and no window crosses a segment boundary. For a distributed sampler, windowStarts lists
// candidate windows and batchAt assembles any chosen subset.
// Details: docs/internals.md#dataset
import { Rng } from '@zeroring/core';

export type Split = 'train' | 'val';

export interface Batch {
  /** Row-major [B, T] token ids. */
  input: Int32Array;
  /** input shifted left by one: targets[b, t] = token after input[b, t]. */
  targets: Int32Array;
  batchSize: number;
  blockSize: number;
}

export interface TextDatasetOptions {
  /** Fraction of the stream held out for validation (default 0.1). */
  valFraction?: number;
  /** Seed that picks which chunks are validation (default 0). */
  seed?: number;
  /** Number of equal chunks the stream is cut into before the split (default 20). */
  chunks?: number;
}

/** A half-open [start, end) range of token positions. */
export interface Segment {
  start: number;
  end: number;
}

export class TextDataset {
  readonly tokens: Int32Array;
  readonly segments: Record<Split, Segment[]>;

  constructor(tokens: Int32Array, options: TextDatasetOptions = {}) {
    const { valFraction = 0.1, seed = 0, chunks = 20 } = options;
    if (!(valFraction > 0 && valFraction < 1))
      throw new RangeError(`valFraction must be in (0, 1), got ${valFraction}`);
    if (!Number.isInteger(chunks) || chunks < 2) throw new RangeError(`chunks must be an integer >= 2, got ${chunks}`);
    if (tokens.length < chunks * 2)
      throw new RangeError(`dataset has ${tokens.length} tokens; expected at least ${chunks * 2} for ${chunks} chunks`);
    this.tokens = tokens;

    const order = Array.from({ length: chunks }, (_, i) => i);
    new Rng(seed).shuffle(order);
    const nVal = Math.max(1, Math.round(chunks * valFraction));
    const isVal = new Array<boolean>(chunks).fill(false);
    for (const c of order.slice(0, nVal)) isVal[c] = true;

    // Adjacent chunks of the same split merge into one segment, so windows can span them.
    this.segments = { train: [], val: [] };
    const bound = (c: number) => Math.round((c * tokens.length) / chunks);
    for (let c = 0; c < chunks; c++) {
      const list = this.segments[isVal[c] ? 'val' : 'train'];
      const last = list[list.length - 1];
      if (last && last.end === bound(c)) last.end = bound(c + 1);
      else list.push({ start: bound(c), end: bound(c + 1) });
    }
  }

  /** Number of tokens in a split. */
  size(split: Split): number {
    return this.segments[split].reduce((n, s) => n + s.end - s.start, 0);
  }

  /**
   * Start positions of the windows of `blockSize` (+1 for the shifted target) inside `split`,
   * every `stride` tokens within each segment. stride = blockSize gives non-overlapping windows.
   */
  windowStarts(split: Split, blockSize: number, stride = 1): Int32Array {
    this.checkBlockSize(split, blockSize);
    if (!Number.isInteger(stride) || stride < 1)
      throw new RangeError(`stride must be a positive integer, got ${stride}`);
    const starts: number[] = [];
    for (const seg of this.segments[split]) {
      for (let s = seg.start; s + blockSize + 1 <= seg.end; s += stride) starts.push(s);
    }
    return Int32Array.from(starts);
  }

  /** Assemble a batch from explicit window start positions (rows in the order given). */
  batchAt(starts: ArrayLike<number>, blockSize: number): Batch {
    const B = starts.length;
    const input = new Int32Array(B * blockSize);
    const targets = new Int32Array(B * blockSize);
    for (let b = 0; b < B; b++) {
      const s = starts[b]!;
      if (!Number.isInteger(s) || s < 0 || s + blockSize + 1 > this.tokens.length) {
        throw new RangeError(
          `window start ${s} with blockSize ${blockSize} is outside [0, ${this.tokens.length - blockSize - 1}]`,
        );
      }
      input.set(this.tokens.subarray(s, s + blockSize), b * blockSize);
      targets.set(this.tokens.subarray(s + 1, s + blockSize + 1), b * blockSize);
    }
    return { input, targets, batchSize: B, blockSize };
  }

  /** B random windows of length T from `split` (uniform over valid start positions). */
  batch(rng: Rng, batchSize: number, blockSize: number, split: Split = 'train'): Batch {
    this.checkBlockSize(split, blockSize);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
    // Pick a segment with probability proportional to its number of windows, then a start in it.
    const segs = this.segments[split].filter((s) => s.end - s.start >= blockSize + 1);
    const counts = segs.map((s) => s.end - s.start - blockSize);
    const total = counts.reduce((a, b) => a + b, 0);
    const starts = new Array<number>(batchSize);
    for (let b = 0; b < batchSize; b++) {
      let r = rng.int(total);
      let i = 0;
      while (r >= counts[i]!) r -= counts[i++]!;
      starts[b] = segs[i]!.start + r;
    }
    return this.batchAt(starts, blockSize);
  }

  private checkBlockSize(split: Split, blockSize: number): void {
    if (!Number.isInteger(blockSize) || blockSize < 1)
      throw new RangeError(`blockSize must be a positive integer, got ${blockSize}`);
    const longest = Math.max(...this.segments[split].map((s) => s.end - s.start));
    if (longest < blockSize + 1) {
      throw new RangeError(
        `${split} split has no segment of ${blockSize + 1} tokens ` +
          `(longest ${longest}); use a larger corpus or smaller blockSize`,
      );
    }
  }
}
