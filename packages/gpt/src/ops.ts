// Layers with hand-written gradients. On tfjs CPU backends they are shaped for the kernels that
// are fast there (plain A @ B with explicit transposes, axis-0 reductions as a matmul, GELU through
// sigmoid, a closed-form LayerNorm backward). On webgpu they run @zeroring/backend's WGSL programs
// and its matMulAuto (tfjs's matmul or a register-tile WGSL one, whichever measured faster for
// the shape on this device), as few dispatches as possible. Each op picks its path from the
// active backend; both are checked in test/ops.test.ts and test/ops-webgpu.test.ts.
// Details: docs/internals.md#ops
import * as tf from '@tensorflow/tfjs-core';
import {
  matMulAuto,
  webgpuColumnSum,
  webgpuCrossEntropyGrad,
  webgpuCrossEntropyMean,
  webgpuCrossEntropyRows,
  webgpuEmbeddingGather,
  webgpuEmbeddingGrad,
  webgpuGelu,
  webgpuGeluGrad,
  webgpuKernelsActive,
  webgpuLayerNorm,
  webgpuLayerNormGainGrad,
  webgpuLayerNormInputGrad,
} from '@zeroring/backend';

type T2 = tf.Tensor2D;

/** tf.customGrad with typed inputs: f gets the inputs and `save`, returns value and gradFunc. */
function defineOp<In extends tf.Tensor[], Out extends tf.Tensor>(
  f: (inputs: In, save: tf.GradSaveFunc) => { value: Out; gradFunc: (dy: Out, saved: tf.Tensor[]) => tf.Tensor[] },
): (...inputs: In) => Out {
  const op = tf.customGrad<Out>((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return f(args.slice(0, -1) as In, save);
  });
  return (...inputs: In) => op(...inputs);
}

/** Calls `gpu` while the webgpu backend is active, else `cpu` (the two take the same inputs). */
function byBackend<F extends (...args: never[]) => tf.Tensor>(cpu: F, gpu: F): F {
  return ((...args: Parameters<F>) => (webgpuKernelsActive() ? gpu(...args) : cpu(...args))) as F;
}

/** Sum over rows as a matmul: ones[1,N] @ x -> [cols]. */
function sumRows(x: T2): tf.Tensor1D {
  return tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]);
}

/** Mean of each row -> [N,1] (last-axis reductions need no transpose). */
function rowMean(x: T2): T2 {
  return tf.mean(x, -1, true) as T2;
}

/**
 * Gradients of y = a [M,K] @ b [K,N] as plain matmuls:
 *   da = dy @ b^T
 *   db = a^T @ dy,  or (dy^T @ a)^T when transposing dy and the [K,N] result moves fewer values.
 */
function matMulGrads(a: T2, b: T2, dy: T2): [T2, T2] {
  const da = tf.matMul(dy, tf.transpose(b));
  const db = a.size <= dy.size + b.size ? tf.matMul(tf.transpose(a), dy) : tf.transpose(tf.matMul(tf.transpose(dy), a));
  return [da as T2, db as T2];
}

/**
 * The same gradients on webgpu, each one matmul reading its transposed operand in place, by
 * whichever implementation matMulAuto measured fastest for the shape on this device. tfjs's
 * candidate for dy @ b^T transposes the (weight-sized) b first: on lavapipe its transposeB
 * shader measured ~2x slower than a transpose plus a plain matmul.
 */
function matMulGradsWebGPU(a: T2, b: T2, dy: T2): [T2, T2] {
  return [matMulAuto(dy, b, { transposeB: true, tfjsTransposeBFirst: true }), matMulAuto(a, dy, { transposeA: true })];
}

/** a [M,K] @ b [K,N]. */
export const matMul = byBackend(
  defineOp(([a, b]: [T2, T2], save) => {
    save([a, b]);
    return {
      value: tf.matMul(a, b) as T2,
      gradFunc: (dy: T2, saved: tf.Tensor[]) => matMulGrads(saved[0] as T2, saved[1] as T2, dy),
    };
  }),
  defineOp(([a, b]: [T2, T2], save) => {
    save([a, b]);
    return {
      value: matMulAuto(a, b),
      gradFunc: (dy: T2, saved: tf.Tensor[]) => matMulGradsWebGPU(saved[0] as T2, saved[1] as T2, dy),
    };
  }),
);

/**
 * a [M,K] @ b^T for b [N,K] (the tied head: x @ wte^T). On webgpu the matmul reads b
 * transposed in place, forward and backward; elsewhere it is matMul(a, transpose(b)).
 */
export const matMulTransposed = byBackend(
  (a: T2, b: T2): T2 => matMul(a, tf.transpose(b)),
  defineOp(([a, b]: [T2, T2], save) => {
    save([a, b]);
    return {
      value: matMulAuto(a, b, { transposeB: true }),
      gradFunc: (dy: T2, saved: tf.Tensor[]) => {
        const [sa, sb] = saved as [T2, T2];
        return [matMulAuto(dy, sb), matMulAuto(dy, sa, { transposeA: true })];
      },
    };
  }),
);

/** x [N,in] @ w [in,out] + b [out]. */
export const linear = byBackend(
  defineOp(([x, w, b]: [T2, tf.Tensor, tf.Tensor], save) => {
    save([x, w]);
    return {
      value: tf.add(tf.matMul(x, w as T2), b) as T2,
      gradFunc: (dy: T2, saved: tf.Tensor[]) => [...matMulGrads(saved[0] as T2, saved[1] as T2, dy), sumRows(dy)],
    };
  }),
  defineOp(([x, w, b]: [T2, tf.Tensor, tf.Tensor], save) => {
    save([x, w]);
    return {
      value: matMulAuto(x, w, { bias: b }),
      gradFunc: (dy: T2, saved: tf.Tensor[]) => [
        ...matMulGradsWebGPU(saved[0] as T2, saved[1] as T2, dy),
        webgpuColumnSum(dy),
      ],
    };
  }),
);

const LN_EPS = 1e-5;

/** LayerNorm over the last axis of x [N,C] with gain g [C] and shift b [C]. */
const layerNormCpu = defineOp(([x, g, b]: [T2, tf.Tensor, tf.Tensor], save) => {
  const xc = tf.sub(x, rowMean(x));
  const rstd = tf.rsqrt(tf.add(rowMean(tf.square(xc) as T2), LN_EPS));
  const xhat = tf.mul(xc, rstd) as T2;
  save([xhat, rstd, g]);
  return {
    value: tf.add(tf.mul(xhat, g), b) as T2,
    gradFunc: (dy: T2, saved: tf.Tensor[]) => {
      const [sxhat, srstd, sg] = saved as [T2, T2, tf.Tensor1D];
      const gy = dy;
      const dxhat = tf.mul(gy, sg) as T2;
      // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the row.
      const m1 = rowMean(dxhat);
      const m2 = rowMean(tf.mul(dxhat, sxhat) as T2);
      const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(sxhat, m2)), srstd);
      return [dx, sumRows(tf.mul(gy, sxhat)), sumRows(gy)];
    },
  };
});

/** LayerNorm on webgpu: x is saved and its row statistics recomputed by the backward kernels. */
const layerNormWebGPU = defineOp(([x, g, b]: [T2, tf.Tensor, tf.Tensor], save) => {
  save([x, g]);
  return {
    value: webgpuLayerNorm(x, g, b, LN_EPS),
    gradFunc: (dy: T2, saved: tf.Tensor[]) => {
      const [sx, sg] = saved as [T2, tf.Tensor1D];
      return [
        webgpuLayerNormInputGrad(sx, sg, dy, LN_EPS),
        webgpuLayerNormGainGrad(sx, dy, LN_EPS),
        webgpuColumnSum(dy),
      ];
    },
  };
});

/** LayerNorm over the last axis of x [N,C] with gain g [C] and shift b [C]. */
export const layerNorm = byBackend(layerNormCpu, layerNormWebGPU);

const GELU_K = 2 * Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

const geluCpu = defineOp(([x]: [T2], save) => {
  const x2 = tf.square(x);
  const s = tf.sigmoid(tf.mul(x, tf.add(tf.mul(x2, GELU_K * GELU_A), GELU_K)));
  save([x, x2, s]);
  return {
    value: tf.mul(x, s) as T2,
    gradFunc: (dy: T2, saved: tf.Tensor[]) => {
      const [sx, sx2, ss] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
      // d/dx [x s(u)] = s + x s (1 - s) u',  u = K(x + A x^3),  u' = K(1 + 3A x^2)
      const du = tf.add(tf.mul(sx2, 3 * GELU_K * GELU_A), GELU_K);
      const ds = tf.mul(ss, tf.sub(1, ss));
      return [tf.mul(dy, tf.add(ss, tf.mul(tf.mul(sx, ds), du)))];
    },
  };
});

/** GELU on webgpu: saves the pre-activation only; the gradient kernel recomputes the sigmoid. */
const geluWebGPU = defineOp(([x]: [T2], save) => {
  save([x]);
  return {
    value: webgpuGelu(x),
    gradFunc: (dy: T2, saved: tf.Tensor[]) => [webgpuGeluGrad(saved[0] as T2, dy)],
  };
});

/** GPT-2 GELU 0.5x(1 + tanh(z)), z = sqrt(2/pi)(x + 0.044715x^3), computed as x * sigmoid(2z). */
export const gelu = byBackend(geluCpu, geluWebGPU);

/**
 * Token embedding rows table[ids] for ids [N] int32 and table [V,C], as oneHot(ids) @ table.
 * For a character vocabulary the one-hot matmul is small and its gradient oneHot^T @ dy is a
 * plain matmul, where `gather` needs UnsortedSegmentSum in backward (slow, or missing on wasm).
 * The one-hot is built as int32 and cast: tfjs-backend-wasm 4.22's OneHot ignores its dtype
 * argument and writes int32 bit patterns into a float32 tensor.
 */
const embeddingCpu = defineOp(([ids, table]: [tf.Tensor1D, tf.Tensor], save) => {
  const oneHot = tf.cast(tf.oneHot(ids, table.shape[0]!), 'float32') as T2;
  save([oneHot]);
  return {
    value: tf.matMul(oneHot, table as T2) as T2,
    gradFunc: (dy: T2, saved: tf.Tensor[]) => {
      const [sOneHot] = saved as [T2];
      // ids are integers: their "gradient" is zero, returned only because customGrad wants one per input.
      return [tf.zeros(sOneHot.shape.slice(0, 1), 'int32'), tf.matMul(tf.transpose(sOneHot), dy)];
    },
  };
});

/**
 * Token plus position embedding on webgpu, flat: table[ids[n]] + pos[n mod T] in one dispatch;
 * backward a scatter-add into the table and the position rows summed over the batch.
 */
const tokenPositionWebGPU = defineOp(([ids, table, pos]: [tf.Tensor1D, tf.Tensor, tf.Tensor], save) => {
  save([ids]);
  const [T, C] = pos.shape as [number, number];
  return {
    value: webgpuEmbeddingGather(ids, table as T2, pos as T2),
    gradFunc: (dy: T2, saved: tf.Tensor[]) => {
      const [sIds] = saved as [tf.Tensor1D];
      const dPos = webgpuColumnSum(tf.reshape(dy, [dy.shape[0] / T, T * C]) as T2);
      // The ids' zero gradient is a host tensor that nothing uploads: no dispatch.
      return [tf.zeros(sIds.shape, 'int32'), webgpuEmbeddingGrad(sIds, dy, table.shape[0]!), tf.reshape(dPos, [T, C])];
    },
  };
});

/** Token plus position embedding of ids [B,T] (int32): table [V,C] rows + pos [T,C] -> [B,T,C]. */
export function tokenPositionEmbedding(ids: tf.Tensor, table: tf.Tensor, pos: tf.Tensor): tf.Tensor3D {
  const [B, T] = ids.shape as [number, number];
  const C = table.shape[1]!;
  const flat = tf.reshape(ids, [B * T]) as tf.Tensor1D;
  if (!webgpuKernelsActive()) return tf.add(tf.reshape(embeddingCpu(flat, table), [B, T, C]), pos) as tf.Tensor3D;
  return tf.reshape(tokenPositionWebGPU(flat, table, pos), [B, T, C]);
}

/**
 * Mean cross-entropy of logits [N,V] against integer targets [N], through logSoftmax (stable).
 * Backward is the closed form (softmax - oneHot) / N instead of autodiff through logSoftmax.
 */
const softmaxCrossEntropyCpu = defineOp(([logits, targets]: [T2, tf.Tensor1D], save) => {
  const [N, V] = logits.shape;
  const oneHot = tf.cast(tf.oneHot(targets, V), 'float32');
  const logp = tf.logSoftmax(logits);
  save([logp, oneHot]);
  return {
    value: tf.mul(tf.sum(tf.mul(logp, oneHot)), -1 / N) as tf.Scalar,
    gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
      const [slogp, sOneHot] = saved as [T2, T2];
      return [tf.mul(tf.sub(tf.exp(slogp), sOneHot), tf.mul(dy, 1 / N)), tf.zeros([N], 'int32')];
    },
  };
});

/**
 * Cross-entropy on webgpu: per-row log-sum-exp and loss in one dispatch, their mean in a
 * second; backward reads the saved log-sum-exp. The loss stays a device tensor.
 */
const softmaxCrossEntropyWebGPU = defineOp(([logits, targets]: [T2, tf.Tensor1D], save) => {
  const rows = webgpuCrossEntropyRows(logits, targets);
  save([logits, targets, rows]);
  return {
    value: webgpuCrossEntropyMean(rows),
    gradFunc: (dy: tf.Scalar, saved: tf.Tensor[]) => {
      const [sLogits, sTargets, sRows] = saved as [T2, tf.Tensor1D, T2];
      return [webgpuCrossEntropyGrad(sLogits, sTargets, sRows, dy), tf.zeros([sLogits.shape[0]], 'int32')];
    },
  };
});

/** Mean cross-entropy of logits [N,V] against integer targets [N]. */
export const softmaxCrossEntropy = byBackend(softmaxCrossEntropyCpu, softmaxCrossEntropyWebGPU);
