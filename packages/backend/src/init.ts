// initBackend: one call that makes a tfjs backend ready, with every gradient registered, and
// says (in the log and in its result) which backend runs and why.
import * as tf from '@tensorflow/tfjs-core';
import { BACKEND_KINDS, UnknownBackendError, type BackendKind } from './errors.ts';
import { registerAllGradients } from './gradients.ts';
import { defaultLogger, type BackendLogger } from './logger.ts';
import { initNamedBackend, type BackendInfo, type BackendName } from './named.ts';
import { chooseAuto } from './auto.ts';
import { assertSingleTfjsCore } from './single-core.ts';

export interface InitBackendOptions {
  /** Where to log; defaults to the process's one logger (@zeroring/core). */
  logger?: BackendLogger;
}

function isBackendKind(value: unknown): value is BackendKind {
  return typeof value === 'string' && (BACKEND_KINDS as readonly string[]).includes(value);
}

export async function initBackend(kind: BackendKind = 'auto', opts: InitBackendOptions = {}): Promise<BackendInfo> {
  if (!isBackendKind(kind)) throw new UnknownBackendError(kind);
  const log = opts.logger ?? defaultLogger();
  assertSingleTfjsCore();
  await registerAllGradients();
  const info = kind === 'auto' ? await chooseAuto(log) : await initNamedBackend(kind, `requested --backend ${kind}`);
  log.info(
    { backend: info.name, reason: info.reason, adapter: info.adapter, ...info.details, tfjs: tf.version_core },
    `tfjs backend: ${info.name}${adapterText(info.adapter)}`,
  );
  return info;
}

function adapterText(adapter: BackendInfo['adapter']): string {
  if (!adapter) return '';
  return ` on ${adapter.description}${adapter.software ? ' (software adapter)' : ''}`;
}

export { initNamedBackend, type BackendInfo, type BackendName };
