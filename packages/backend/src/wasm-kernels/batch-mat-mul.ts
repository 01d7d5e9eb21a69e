// BatchMatMul for the wasm backend, routed onto XNNPACK wherever the shapes allow.
//
// tfjs-backend-wasm 4.22 sends a matmul to XNNPACK only when neither side is transposed and
// both have batch size 1 (batch_mat_mul_impl.cc); everything else runs a scalar blocked
// loop 7-28x slower. Training hits that loop constantly: every gradient of a matmul is a
// transposed one (dA = dY·Bᵀ, dB = Aᵀ·dY), as is the tied head (x·wteᵀ), and x[B,T,C]·W has
// batch B. So before calling the stock kernel we (1) materialise transposes with the wasm
// Transpose kernel (O(n²) copies in front of O(n³) work) and (2) fold a's batch into its rows
// when b is shared across the batch ([B,M,K]·[K,N] = [B·M,K]·[K,N]). Matmuls where both
// sides carry a batch (attention) keep the stock kernel.
import {
  broadcast_util,
  getKernel,
  util,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

type Call = (inputs: Record<string, TensorInfo>, attrs: NamedAttrMap) => TensorInfo;

function kernel(name: string, backend: BackendWasm): Call {
  const k = getKernel(name, 'wasm');
  if (!k) throw new Error(`wasm kernel ${name} is not registered`);
  return (inputs, attrs) => k.kernelFunc({ inputs, backend, attrs }) as TensorInfo;
}

export function fastBatchMatMulConfig(stock: KernelConfig): KernelConfig {
  const kernelFunc = (args: { inputs: Record<string, TensorInfo>; backend: BackendWasm; attrs: NamedAttrMap }) => {
    const { inputs, backend, attrs } = args;
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const transposeA = Boolean(attrs.transposeA);
    const transposeB = Boolean(attrs.transposeB);
    const callStock = (aa: TensorInfo, bb: TensorInfo, ta: boolean, tb: boolean) =>
      stock.kernelFunc({ inputs: { a: aa, b: bb }, backend, attrs: { transposeA: ta, transposeB: tb } }) as TensorInfo;
    const batchA = util.sizeFromShape(a.shape.slice(0, -2));
    const batchB = util.sizeFromShape(b.shape.slice(0, -2));
    const alreadyFast = !transposeA && !transposeB && batchA === 1;
    if (a.dtype !== 'float32' || b.dtype !== 'float32' || batchB !== 1 || alreadyFast) {
      return callStock(a, b, transposeA, transposeB);
    }
    const outBatch = broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));

    const transpose = kernel('Transpose', backend);
    const reshape = kernel('Reshape', backend);
    const temps: TensorInfo[] = [];
    const keep = (t: TensorInfo) => (temps.push(t), t);
    try {
      const [ar, ac] = a.shape.slice(-2) as [number, number];
      const [br, bc] = b.shape.slice(-2) as [number, number];
      // a as [batchA, M, K], untransposed.
      let a3 = keep(reshape({ x: a }, { shape: [batchA, ar, ac] }));
      if (transposeA) a3 = keep(transpose({ x: a3 }, { perm: [0, 2, 1] }));
      const [m, k] = [a3.shape[1]!, a3.shape[2]!];
      // b as [1, K, N], untransposed.
      let b3 = keep(reshape({ x: b }, { shape: [1, br, bc] }));
      if (transposeB) b3 = keep(transpose({ x: b3 }, { perm: [0, 2, 1] }));
      util.assert(
        b3.shape[1] === k,
        () =>
          `Error in matMul: inner shapes (${k}) and (${b3.shape[1]}) of Tensors with shapes ${a.shape} and ` +
          `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
      );
      const a2 = keep(reshape({ x: a3 }, { shape: [1, batchA * m, k] }));
      const out = callStock(a2, b3, false, false);
      // The stock kernel sets out.shape the same way: the data is already laid out [batch..., M, N].
      out.shape = [...outBatch, m, b3.shape[2]!];
      return out;
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  };
  return { ...stock, kernelFunc: kernelFunc as unknown as KernelFunc, [FAST]: true } as KernelConfig;
}

const FAST = Symbol.for('zeroring.fastBatchMatMul');

export function isFastBatchMatMul(config: KernelConfig | undefined): boolean {
  return Boolean(config && (config as unknown as Record<symbol, unknown>)[FAST]);
}
