// Model FLOPs and the peak they are measured against, for MFU (model FLOPs utilisation) as
// PaLM (appendix B) and nanoGPT's estimate_mfu define it: a training step of a transformer costs
// 6·N FLOPs per token for the weights (2 forward, 4 backward) plus 12·L·T·C for attention's
// score and value matmuls, whatever the implementation actually executes (recomputation and
// wasted work do not count). MFU = tokens/s · that / the hardware's peak.
//
// The peak is the GPU's dense fp32 rate without tensor cores: tfjs runs float32 WGSL through
// Dawn, which reaches neither tf32 nor bf16 tensor cores. Known adapters below, matched on
// Dawn's adapter `device` or `description`; anything else has no assumed peak (MFU omitted)
// unless the caller names one.

/** FLOPs of one training token: 6·N + 12·L·T·C (N parameters, L layers, T context, C width). */
export function trainFlopsPerToken(m: { params: number; nLayer: number; blockSize: number; nEmbd: number }): number {
  return 6 * m.params + 12 * m.nLayer * m.blockSize * m.nEmbd;
}

export const MFU_FORMULA =
  'MFU = tokens/s x (6N + 12*L*T*C) / peak; N = parameters (tied wte once), L layers, T context, C width';

/** Dense fp32 (non-tensor-core) peaks in TFLOP/s from the vendors' data sheets, by GPU model. */
export const FP32_PEAK_TFLOPS: ReadonlyArray<{ match: RegExp; name: string; tflops: number }> = [
  { match: /h200/i, name: 'NVIDIA H200 (SXM)', tflops: 67 },
  { match: /h100.*pcie|pcie.*h100/i, name: 'NVIDIA H100 PCIe', tflops: 51 },
  { match: /h100/i, name: 'NVIDIA H100 (SXM)', tflops: 67 },
  { match: /a100/i, name: 'NVIDIA A100', tflops: 19.5 },
  { match: /l40s/i, name: 'NVIDIA L40S', tflops: 91.6 },
  { match: /\bl4\b|-l4$/i, name: 'NVIDIA L4', tflops: 30.3 },
  { match: /a10g/i, name: 'NVIDIA A10G', tflops: 31.2 },
  { match: /4090/i, name: 'NVIDIA GeForce RTX 4090', tflops: 82.6 },
  { match: /mi300x/i, name: 'AMD Instinct MI300X', tflops: 163.4 },
];

export interface Peak {
  tflops: number;
  /** Where the figure comes from: the table's GPU name, or 'given' for a caller's value. */
  source: string;
}

/**
 * The assumed fp32 peak of an adapter: `given` TFLOP/s when the caller names one, else the
 * table's entry for a hardware adapter whose device or description matches, else undefined
 * (software adapters and unknown GPUs: their MFU would mean nothing).
 */
export function fp32Peak(
  adapter: { device?: string; description?: string; software?: boolean } | undefined,
  given?: number,
): Peak | undefined {
  if (given !== undefined) return { tflops: given, source: 'given' };
  if (!adapter || adapter.software) return undefined;
  const text = `${adapter.device ?? ''} ${adapter.description ?? ''}`;
  const hit = FP32_PEAK_TFLOPS.find((p) => p.match.test(text));
  return hit && { tflops: hit.tflops, source: hit.name };
}
