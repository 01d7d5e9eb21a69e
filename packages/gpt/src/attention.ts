// Causal multi-head self-attention as one fused op: qkv [B*T, 3C] -> y [B*T, C]. On CPU backends
// (cpu, wasm) a JavaScript kernel that reads q, k, v straight from the qkv rows in the tensors' own
// memory, skips the masked half and has a closed-form backward; it runs as WebAssembly SIMD
// (attention-simd.ts) where the head size is a multiple of 4. On webgpu FlashAttention-style WGSL
// programs (one dispatch forward, two backward, no [B, H, T, T] tensor). Elsewhere tfjs ops with
// autodiff gradients. The paths are checked against each other in test/ops.test.ts and
// test/attention-webgpu.test.ts. Details: docs/internals.md#attention
import * as tf from '@tensorflow/tfjs-core';
import {
  HOST_MEMORY_BACKENDS,
  flashAttentionBackward,
  flashAttentionForward,
  flashAttentionSupports,
  runHostKernel,
  webgpuKernelsActive,
} from '@zeroring/backend';
import {
  attentionBackwardSimd,
  attentionForwardSimd,
  exponentiateRow,
  simdAttentionAvailable,
  type AttentionShape,
} from './attention-simd.ts';

export type { AttentionShape };

type T2 = tf.Tensor2D;

/** Causal self-attention of the packed projections qkv [B*T, 3C] (columns q | k | v, heads contiguous). */
export function causalSelfAttention(qkv: T2, shape: AttentionShape): T2 {
  const C = qkv.shape[1] / 3;
  if (!Number.isInteger(C) || C % shape.H !== 0 || qkv.shape[0] !== shape.B * shape.T) {
    throw new RangeError(
      `qkv shape ${JSON.stringify(qkv.shape)} does not match B=${shape.B}, ` +
        `T=${shape.T}, H=${shape.H} (expected [B*T, 3C] with H | C)`,
    );
  }
  if (HOST_MEMORY_BACKENDS.has(tf.getBackend())) return attentionKernelOp(qkv, shape);
  if (webgpuKernelsActive() && flashAttentionSupports(C / shape.H)) return flashAttentionOp(qkv, shape);
  return attentionTfOps(qkv, shape);
}

// ---- WGSL programs (webgpu) ----

/** The WebGPU programs as one op: backward needs only qkv and y, which the tape holds anyway. */
function flashAttentionOp(qkv: T2, shape: AttentionShape): T2 {
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = args[0] as T2;
    const save = args[1] as tf.GradSaveFunc;
    const y = flashAttentionForward(x, shape);
    save([x, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        flashAttentionBackward(saved[0] as T2, saved[1] as T2, dy as T2, shape),
    };
  });
  return op(qkv) as T2;
}

// ---- tfjs ops (any backend) ----

const maskCache = new Map<number, Float32Array>();
/** Additive causal mask [T, T] (0 on and below the diagonal, -1e9 above), kept as a host array. */
function causalMask(T: number): tf.Tensor2D {
  let m = maskCache.get(T);
  if (!m) {
    m = new Float32Array(T * T);
    for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) m[i * T + j] = -1e9;
    maskCache.set(T, m);
  }
  return tf.tensor2d(m, [T, T]);
}

export function attentionTfOps(qkv: T2, { B, T, H }: AttentionShape): T2 {
  const C = qkv.shape[1] / 3;
  const hs = C / H;
  // [B*T, 3, C] -> [3, B*T, C], then [3B, T, H, hs] -> [3B, H, T, hs]: two cheap transposes
  // (one 5-D transpose does the same but takes a slow generic path on wasm).
  const parts = tf.transpose(tf.reshape(qkv, [B * T, 3, C]), [1, 0, 2]);
  const heads = tf.reshape(tf.transpose(tf.reshape(parts, [3 * B, T, H, hs]), [0, 2, 1, 3]), [3, B * H, T, hs]);
  const [q, k, v] = tf.split(heads, 3, 0).map((t) => tf.reshape(t, [B * H, T, hs])) as [
    tf.Tensor3D,
    tf.Tensor3D,
    tf.Tensor3D,
  ];
  const scores = tf.add(tf.matMul(tf.mul(q, tf.scalar(1 / Math.sqrt(hs))), k, false, true), causalMask(T));
  const y = tf.matMul(tf.softmax(scores), v); // [B*H, T, hs]
  return tf.reshape(tf.transpose(tf.reshape(y, [B, H, T, hs]), [0, 2, 1, 3]), [B * T, C]) as T2;
}

// ---- JavaScript kernel (cpu, wasm) ----

function attentionKernelOp(qkv: T2, shape: AttentionShape): T2 {
  const rows = qkv.shape[0];
  const C = qkv.shape[1] / 3;
  const attShape = [shape.B * shape.H, shape.T, shape.T];
  // The same math in WebAssembly SIMD where the head size allows (attention-simd.ts).
  const simd = simdAttentionAvailable(C, shape.H);
  const forward = simd ? attentionForwardSimd : attentionForward;
  const backward = simd ? attentionBackwardSimd : attentionBackward;
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = args[0] as T2;
    const save = args[1] as tf.GradSaveFunc;
    const [y, att] = runHostKernel([x], [[rows, C], attShape], ([src], [yv, attv]) =>
      forward(src!, shape, C, yv!, attv!),
    );
    // The tape keeps its own references to qkv and the probabilities until backward has run.
    save([x, att!]);
    att!.dispose();
    return {
      value: y as T2,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        runHostKernel([saved[0]!, saved[1]!, dy], [[rows, 3 * C]], ([src, attv, dyv], [dqkv]) =>
          backward(src!, attv!, dyv!, shape, C, dqkv!),
        ),
    };
  });
  return op(qkv) as T2;
}

/**
 * Forward into zero-filled y [B*T, C] and att [B*H, T, T]: the output and the attention
 * probabilities (upper triangle left 0).
 */
export function attentionForward(
  qkv: Float32Array,
  { B, T, H }: AttentionShape,
  C: number,
  y: Float32Array,
  att: Float32Array,
): void {
  const hs = C / H;
  const row = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  const acc = new Float64Array(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const a0 = (b * H + h) * T * T;
      const kBase = b * T * row + C + h * hs;
      const vBase = b * T * row + 2 * C + h * hs;
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * row + h * hs;
        const ai = a0 + i * T;
        // Scores q_i . k_j for j <= i, four keys at a time (independent sums run in parallel).
        let max = -Infinity;
        let j = 0;
        for (; j + 3 <= i; j += 4) {
          const k0 = kBase + j * row,
            k1 = k0 + row,
            k2 = k1 + row,
            k3 = k2 + row;
          let s0 = 0,
            s1 = 0,
            s2 = 0,
            s3 = 0;
          for (let d = 0; d < hs; d++) {
            const q = qkv[qi + d]!;
            s0 += q * qkv[k0 + d]!;
            s1 += q * qkv[k1 + d]!;
            s2 += q * qkv[k2 + d]!;
            s3 += q * qkv[k3 + d]!;
          }
          att[ai + j] = s0 *= scale;
          att[ai + j + 1] = s1 *= scale;
          att[ai + j + 2] = s2 *= scale;
          att[ai + j + 3] = s3 *= scale;
          max = Math.max(max, s0, s1, s2, s3);
        }
        for (; j <= i; j++) {
          const kj = kBase + j * row;
          let s = 0;
          for (let d = 0; d < hs; d++) s += qkv[qi + d]! * qkv[kj + d]!;
          att[ai + j] = s *= scale;
          if (s > max) max = s;
        }
        const inv = 1 / exponentiateRow(att, ai, i + 1, max);
        acc.fill(0);
        for (let j = 0; j <= i; j++) {
          const p = att[ai + j]! * inv;
          att[ai + j] = p;
          const vj = vBase + j * row;
          for (let d = 0; d < hs; d++) acc[d] += p * qkv[vj + d]!;
        }
        const yi = (b * T + i) * C + h * hs;
        for (let d = 0; d < hs; d++) y[yi + d] = acc[d]!;
      }
    }
  }
}

/**
 * Backward, per row i of each head (p = att):
 *   dp_ij = dy_i . v_j      ds_ij = p_ij (dp_ij - sum_j' p_ij' dp_ij')
 *   dq_i += scale ds_ij k_j     dk_j += scale ds_ij q_i     dv_j += p_ij dy_i
 */
export function attentionBackward(
  qkv: Float32Array,
  att: Float32Array,
  dy: Float32Array,
  { B, T, H }: AttentionShape,
  C: number,
  dqkv: Float32Array,
): void {
  const hs = C / H;
  const row = 3 * C;
  const scale = 1 / Math.sqrt(hs);
  const dp = new Float64Array(T);
  const dq = new Float64Array(hs);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const a0 = (b * H + h) * T * T;
      const kBase = b * T * row + C + h * hs;
      const vBase = b * T * row + 2 * C + h * hs;
      for (let i = 0; i < T; i++) {
        const ai = a0 + i * T;
        const dyi = (b * T + i) * C + h * hs;
        const qi = (b * T + i) * row + h * hs;
        let rowDot = 0;
        let j = 0;
        for (; j + 3 <= i; j += 4) {
          const v0 = vBase + j * row,
            v1 = v0 + row,
            v2 = v1 + row,
            v3 = v2 + row;
          let s0 = 0,
            s1 = 0,
            s2 = 0,
            s3 = 0;
          for (let d = 0; d < hs; d++) {
            const g = dy[dyi + d]!;
            s0 += g * qkv[v0 + d]!;
            s1 += g * qkv[v1 + d]!;
            s2 += g * qkv[v2 + d]!;
            s3 += g * qkv[v3 + d]!;
          }
          dp[j] = s0;
          dp[j + 1] = s1;
          dp[j + 2] = s2;
          dp[j + 3] = s3;
          rowDot += s0 * att[ai + j]! + s1 * att[ai + j + 1]! + s2 * att[ai + j + 2]! + s3 * att[ai + j + 3]!;
        }
        for (; j <= i; j++) {
          const vj = vBase + j * row;
          let s = 0;
          for (let d = 0; d < hs; d++) s += dy[dyi + d]! * qkv[vj + d]!;
          dp[j] = s;
          rowDot += s * att[ai + j]!;
        }
        dq.fill(0);
        for (let j = 0; j <= i; j++) {
          const p = att[ai + j]!;
          const ds = p * (dp[j]! - rowDot) * scale;
          const kj = kBase + j * row;
          const vj = vBase + j * row;
          for (let d = 0; d < hs; d++) {
            dq[d] += ds * qkv[kj + d]!;
            dqkv[kj + d] += ds * qkv[qi + d]!;
            dqkv[vj + d] += p * dy[dyi + d]!;
          }
        }
        for (let d = 0; d < hs; d++) dqkv[qi + d] = dq[d]!;
      }
    }
  }
}
