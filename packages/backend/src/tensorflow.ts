// libtensorflow through @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node (CPU).
//
// Both are optional peer dependencies: their install script downloads libtensorflow, so
// they are never installed by default, and this file imports them only when asked. The
// import specifiers are held in variables so that neither TypeScript nor a bundler tries
// to resolve them when they are absent. NOT exercised by CI (nothing can download
// libtensorflow there); keep it small.
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, TensorflowNotInstalledError } from './errors.ts';

export const TENSORFLOW_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'] as const;

export interface TensorflowDetails {
  package: (typeof TENSORFLOW_PACKAGES)[number];
}

function isModuleNotFound(err: unknown, specifier: string): boolean {
  const e = err as { code?: string; message?: string };
  return (
    (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') &&
    typeof e.message === 'string' &&
    e.message.includes(specifier)
  );
}

/**
 * Loads the first installed package (GPU build first). Importing it registers the
 * 'tensorflow' backend with the same tfjs-core instance, provided the user installed the
 * 4.22.0 release that matches it (both list tfjs-core as a dependency).
 */
export async function initTensorflow(
  importer: (specifier: string) => Promise<unknown> = (s) => import(s),
): Promise<TensorflowDetails> {
  let loaded: TensorflowDetails['package'] | undefined;
  let lastMissing: unknown;
  for (const pkg of TENSORFLOW_PACKAGES) {
    try {
      await importer(pkg);
      loaded = pkg;
      break;
    } catch (err) {
      // Installed but broken (missing libcudart, wrong glibc): say so rather than fall back quietly.
      if (!isModuleNotFound(err, pkg)) {
        throw new BackendUnavailableError('tensorflow', `${pkg} is installed but failed to load: ${String(err)}`, {
          cause: err,
        });
      }
      lastMissing = err;
    }
  }
  if (!loaded) throw new TensorflowNotInstalledError([...TENSORFLOW_PACKAGES], { cause: lastMissing });
  if (tf.findBackendFactory('tensorflow') === null) {
    throw new BackendUnavailableError(
      'tensorflow',
      `${loaded} loaded but registered no "tensorflow" backend with this tfjs-core ${tf.version_core}; ` +
        'install the 4.22.0 release so both share one @tensorflow/tfjs-core',
    );
  }
  if (!(await tf.setBackend('tensorflow'))) {
    throw new BackendUnavailableError('tensorflow', `tf.setBackend("tensorflow") failed after loading ${loaded}`);
  }
  await tf.ready();
  return { package: loaded };
}

/** True when one of the packages can be resolved (without loading libtensorflow). */
export function tensorflowInstalled(resolve: (s: string) => string = createRequire(import.meta.url).resolve): boolean {
  return TENSORFLOW_PACKAGES.some((pkg) => {
    try {
      resolve(pkg);
      return true;
    } catch {
      return false;
    }
  });
}
