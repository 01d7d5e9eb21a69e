// The WebAssembly backend (XNNPACK kernels, SIMD where the runtime supports it), loaded from
// the .wasm files inside node_modules/@tensorflow/tfjs-backend-wasm/dist: nothing is fetched.
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { BackendUnavailableError } from './errors.ts';
import { registerExtraWasmKernels } from './wasm-kernels/index.ts';

const require = createRequire(import.meta.url);

export interface WasmDetails {
  simd: boolean;
  threads: boolean;
  addedKernels: string[];
}

let pathsSet = false;

const EVENTS = ['uncaughtException', 'unhandledRejection'] as const;
type Listener = (...args: unknown[]) => void;

// Typed through one event name: the overloads of process.listeners reject a union of names.
const listenersOf = (e: (typeof EVENTS)[number]) =>
  process.listeners(e as 'uncaughtException') as unknown as Listener[];

function processListeners(): Map<string, Listener[]> {
  return new Map(EVENTS.map((e) => [e, listenersOf(e)]));
}

/**
 * Emscripten's Node glue adds process handlers that rethrow every uncaught exception and
 * unhandled rejection from inside its one-line, 100 KB minified module, so Node prints that
 * whole line with any crash and the real error is lost in it. Node's default handling already
 * exits on both; drop the added handlers.
 */
function removeEmscriptenListeners(before: Map<string, Listener[]>): void {
  for (const e of EVENTS) {
    for (const l of listenersOf(e)) {
      if (!before.get(e)!.includes(l)) process.removeListener(e, l);
    }
  }
}

export async function initWasm(): Promise<WasmDetails> {
  if (!pathsSet) {
    // The package's "main" is dist/tf-backend-wasm.node.js, beside the .wasm binaries.
    setWasmPaths(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + '/');
    pathsSet = true;
  }
  const addedKernels = registerExtraWasmKernels();
  const before = processListeners();
  let ok: boolean;
  try {
    ok = await tf.setBackend('wasm');
  } catch (err) {
    throw new BackendUnavailableError('wasm', `initialisation failed: ${String(err)}`, { cause: err });
  } finally {
    removeEmscriptenListeners(before);
  }
  if (!ok) throw new BackendUnavailableError('wasm', 'tf.setBackend("wasm") returned false');
  await tf.ready();
  return {
    simd: Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')),
    threads: Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')),
    addedKernels,
  };
}
