// One named backend, started exactly: what `--backend NAME` does, and each step that 'auto'
// (auto.ts) tries in its order of preference.
import type { BackendKind } from './errors.ts';
import { initCpu } from './cpu.ts';
import { initTensorflow } from './tensorflow.ts';
import { initWasm } from './wasm.ts';
import { initWebGPU, type AdapterInfo } from './webgpu.ts';

export type BackendName = Exclude<BackendKind, 'auto'>;

export interface BackendInfo {
  /** The tfjs backend now active (tf.getBackend()). */
  name: BackendName;
  /** Why this backend: what was asked for, and for 'auto' what was tried and measured. */
  reason: string;
  /** The WebGPU adapter, for name 'webgpu'. */
  adapter?: AdapterInfo;
  /** Extra facts: wasm SIMD/threads, the tfjs-node package loaded. */
  details?: Record<string, unknown>;
}

/** Initialises exactly the named backend, throwing a typed error if it cannot start. */
export async function initNamedBackend(name: BackendName, reason: string): Promise<BackendInfo> {
  switch (name) {
    case 'cpu':
      await initCpu();
      return { name, reason };
    case 'wasm': {
      const d = await initWasm();
      return { name, reason, details: { ...d } };
    }
    case 'webgpu': {
      const adapter = await initWebGPU();
      return { name, reason, adapter };
    }
    case 'tensorflow': {
      const d = await initTensorflow();
      return { name, reason, details: { ...d } };
    }
  }
}
