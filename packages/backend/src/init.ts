// initBackend: one call that makes a tfjs backend ready, with every gradient registered, and
// says (in the log and in its result) which backend runs and why.
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_KINDS, UnknownBackendError, type BackendKind } from './errors.ts';
import { registerAllGradients } from './gradients.ts';
import { defaultLogger, type BackendLogger } from './logger.ts';
import { initCpu } from './cpu.ts';
import { initWasm } from './wasm.ts';
import { initWebGPU, type AdapterInfo } from './webgpu.ts';
import { initTensorflow } from './tensorflow.ts';
import { chooseAuto } from './auto.ts';
import { assertSingleTfjsCore } from './single-core.ts';

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

export interface InitBackendOptions {
  /** Where to log (e.g. comm's getLogger()); defaults to a pino logger on stderr. */
  logger?: BackendLogger;
}

function isBackendKind(value: unknown): value is BackendKind {
  return typeof value === 'string' && (BACKEND_KINDS as readonly string[]).includes(value);
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

export async function initBackend(kind: BackendKind = 'auto', opts: InitBackendOptions = {}): Promise<BackendInfo> {
  if (!isBackendKind(kind)) throw new UnknownBackendError(kind);
  const log = opts.logger ?? defaultLogger();
  assertSingleTfjsCore();
  await registerAllGradients();
  const info = kind === 'auto' ? await chooseAuto(log) : await initNamedBackend(kind, `requested --backend ${kind}`);
  log.info(
    { backend: info.name, reason: info.reason, adapter: info.adapter, ...info.details, tfjs: tf.version_core },
    `tfjs backend: ${info.name}${info.adapter ? ` on ${info.adapter.description}${info.adapter.software ? ' (software adapter)' : ''}` : ''}`,
  );
  return info;
}
