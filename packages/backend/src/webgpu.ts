// WebGPU through Dawn for Node (npm `webgpu`): Dawn's GPU object is installed as
// navigator.gpu with its WebGPU globals (GPUBufferUsage, ...), then tfjs-backend-webgpu runs
// on the adapter we picked and logged. With no GPU, Mesa's lavapipe (a Vulkan driver on the
// CPU, see scripts/setup-webgpu-cpu.sh) gives a software adapter that runs the same shaders.
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError } from './errors.ts';
import { countDeviceWork } from './webgpu-counters.ts';

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU implementation (lavapipe/llvmpipe, SwiftShader): correct but slow. */
  software: boolean;
}

interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

let gpu: GPU | undefined;

async function installNavigatorGpu(): Promise<GPU> {
  if (gpu) return gpu;
  // Without a runtime dir Mesa's lavapipe warns on every start; any writable dir quiets it.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  let dawn: DawnModule;
  try {
    dawn = (await import('webgpu')) as DawnModule;
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `cannot load Dawn (npm "webgpu"): ${String(err)}`, { cause: err });
  }
  const g = globalThis as Record<string, unknown>;
  for (const [name, value] of Object.entries(dawn.globals)) if (!(name in g)) g[name] = value;
  gpu = dawn.create([]);
  if (g.navigator === undefined) {
    g.navigator = { gpu };
  } else {
    // Node 21+ has a global navigator without gpu.
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  }
  return gpu;
}

type RawAdapterInfo = Pick<GPUAdapterInfo, 'vendor' | 'architecture' | 'device' | 'description'> & {
  isFallbackAdapter?: boolean;
};

export function describeAdapter(adapter: GPUAdapter): AdapterInfo {
  return describeAdapterInfo(adapter.info as RawAdapterInfo);
}

function describeAdapterInfo(info: RawAdapterInfo): AdapterInfo {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`;
  return {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    software: info.isFallbackAdapter === true || /llvmpipe|lavapipe|swiftshader|software/i.test(text),
  };
}

/** The adapter WebGPU would use here, or undefined (no driver, no Vulkan ICD). Starts nothing in tfjs. */
export async function probeWebGPUAdapter(): Promise<{ adapter: GPUAdapter; info: AdapterInfo } | undefined> {
  const g = await installNavigatorGpu();
  const adapter = await g.requestAdapter({ powerPreference: 'high-performance' });
  return adapter ? { adapter, info: describeAdapter(adapter) } : undefined;
}

const PROBE_SCRIPT = fileURLToPath(new URL('./webgpu-probe.mjs', import.meta.url));
const PROBE_TIMEOUT_MS = 20_000;

/**
 * The adapter WebGPU would use here, found by a child process (webgpu-probe.mjs) so that Dawn's
 * warnings go to `onStderr` (debug logging) instead of this process's terminal. Costs about
 * 0.2 s. Undefined when there is no adapter; throws BackendUnavailableError when Dawn cannot run.
 */
export function probeWebGPUAdapterInChild(onStderr?: (text: string) => void): Promise<AdapterInfo | undefined> {
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [PROBE_SCRIPT], { timeout: PROBE_TIMEOUT_MS }, (err, stdout, stderr) => {
      if (stderr.trim()) onStderr?.(stderr.trim());
      if (err) {
        const why = err.killed ? `no answer within ${PROBE_TIMEOUT_MS / 1000} s` : stderr.trim().split('\n').pop();
        reject(new BackendUnavailableError('webgpu', `the WebGPU probe failed: ${why}`, { cause: err }));
        return;
      }
      const raw = JSON.parse(stdout) as RawAdapterInfo | null;
      resolve(raw ? describeAdapterInfo(raw) : undefined);
    });
  });
}

/** Mirrors tfjs-backend-webgpu's own factory, but on the adapter we already chose and logged. */
async function createDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const requiredFeatures: GPUFeatureName[] = [];
  if (adapter.features.has('timestamp-query')) requiredFeatures.push('timestamp-query');
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      // tfjs splits a concat into programs of (this limit - 1) inputs; the default 8 would make
      // flattening a bucket of many gradients several dispatches instead of one.
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
  return countDeviceWork(device);
}

let initialised: AdapterInfo | undefined;

export async function initWebGPU(): Promise<AdapterInfo> {
  if (initialised && tf.findBackend('webgpu') !== null) {
    if (!(await tf.setBackend('webgpu'))) throw new BackendUnavailableError('webgpu', 'tf.setBackend("webgpu") failed');
    return initialised;
  }
  const probed = await probeWebGPUAdapter();
  if (!probed) {
    throw new BackendUnavailableError(
      'webgpu',
      'Dawn found no WebGPU adapter (no Vulkan driver). Install GPU drivers, or run ' +
        'scripts/setup-webgpu-cpu.sh as root for the lavapipe software adapter',
    );
  }
  const { adapter, info } = probed;
  const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
  // Replace the factory the package registered at import (it would request its own adapter).
  if (tf.findBackendFactory('webgpu') !== null) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', async () => new WebGPUBackend(await createDevice(adapter), adapter.info), 3);
  let ok: boolean;
  try {
    ok = await tf.setBackend('webgpu');
  } catch (err) {
    throw new BackendUnavailableError('webgpu', `initialisation failed on ${info.description}: ${String(err)}`, {
      cause: err,
    });
  }
  if (!ok) throw new BackendUnavailableError('webgpu', `tf.setBackend("webgpu") failed on ${info.description}`);
  await tf.ready();
  initialised = info;
  return info;
}
