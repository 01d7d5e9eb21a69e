// 'auto': the fastest backend that works on this machine, in a fixed order of preference backed
// by benchmarks/backend-matmul: WebGPU on a hardware adapter, then libtensorflow (when installed),
// then wasm (which beats cpu and WebGPU on a software adapter on CPU-only machines), then cpu. A
// step that fails is logged with its reason and the next is tried.
// Details (the measured figures): docs/internals.md#auto-backend
import { BackendUnavailableError } from './errors.ts';
import { initNamedBackend, type BackendInfo, type BackendName } from './named.ts';
import type { BackendLogger } from './logger.ts';
import { tensorflowInstalled } from './tensorflow.ts';
import { probeWebGPUAdapterInChild, type AdapterInfo } from './webgpu.ts';

async function attempt(
  log: BackendLogger,
  passedOver: string[],
  name: BackendName,
  reason: string,
): Promise<BackendInfo | undefined> {
  try {
    return await initNamedBackend(name, reason);
  } catch (err) {
    const why = err instanceof BackendUnavailableError ? err.reason : String(err);
    log.warn({ backend: name, err: why }, `auto: ${name} failed to start, trying the next backend`);
    passedOver.push(`${name}: failed (${why})`);
    return undefined;
  }
}

export async function chooseAuto(log: BackendLogger): Promise<BackendInfo> {
  const passedOver: string[] = [];
  const because = (r: string) => `auto: ${r}${passedOver.length ? `; passed over ${passedOver.join('; ')}` : ''}`;

  let adapter: AdapterInfo | undefined;
  try {
    adapter = await probeWebGPUAdapterInChild((text) =>
      log.debug({ dawn: text }, 'auto: the WebGPU probe wrote to stderr'),
    );
  } catch (err) {
    passedOver.push(`webgpu: ${err instanceof BackendUnavailableError ? err.reason : String(err)}`);
  }
  if (adapter && !adapter.software) {
    const r = await attempt(log, passedOver, 'webgpu', because(`hardware WebGPU adapter ${adapter.description}`));
    if (r) return r;
  } else if (adapter) {
    passedOver.push(`webgpu: only a software adapter (${adapter.description}), slower than wasm`);
  } else if (passedOver.length === 0) {
    passedOver.push('webgpu: no adapter (no Vulkan driver)');
  }

  if (tensorflowInstalled()) {
    const r = await attempt(log, passedOver, 'tensorflow', because('libtensorflow (tfjs-node) is installed'));
    if (r) return r;
  } else {
    passedOver.push('tensorflow: @tensorflow/tfjs-node(-gpu) not installed');
  }

  const wasm = await attempt(
    log,
    passedOver,
    'wasm',
    because('wasm (SIMD) is the fastest CPU backend: about 30x cpu and 10x lavapipe WebGPU on a 512² matmul'),
  );
  if (wasm) return wasm;
  const cpu = await initNamedBackend('cpu', because('cpu is the backend that always works'));
  return cpu;
}
