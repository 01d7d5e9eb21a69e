// WebGPU through Dawn: real shaders on whatever adapter is present (lavapipe in CI, see
// scripts/setup-webgpu-cpu.sh), compared with cpu. Without an adapter these tests are
// reported as skipped, with the reason printed; under CI they fail (tests/fixtures/webgpu.ts).
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import { initBackend } from '../src/index.ts';
import { gptStep } from './gpt-ops.ts';
import { quietLogger, runOn, values, worstError } from './helpers.ts';
import { webgpuSkipReason } from '../../../tests/fixtures/webgpu.ts';

const skipReason = await webgpuSkipReason('webgpu tests');

async function compare(fn: () => tf.Tensor[], atol: number, rtol: number): Promise<void> {
  const ref = await runOn('cpu', fn);
  const got = await runOn('webgpu', fn);
  got.forEach((g, i) => expect(worstError(g, ref[i], atol, rtol), `output ${i}`).toBeLessThanOrEqual(1));
}

describe('webgpu backend', () => {
  it.skipIf(skipReason !== undefined)('initBackend("webgpu") starts tfjs on the adapter and reports it', async () => {
    const logged: object[] = [];
    const info = await initBackend('webgpu', { logger: { ...quietLogger, info: (o) => logged.push(o) } });
    expect(info.name).toBe('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    expect(info.adapter?.description).toBeTruthy();
    expect(typeof info.adapter?.software).toBe('boolean');
    expect(logged).toContainEqual(expect.objectContaining({ backend: 'webgpu', adapter: info.adapter }));
  });

  it.skipIf(skipReason !== undefined)('matmul (shader) matches cpu', async () => {
    await compare(
      () => [
        tf.matMul(tf.tensor2d(values(64 * 48, 1), [64, 48]), tf.tensor2d(values(48 * 40, 2), [48, 40])),
        tf.matMul(
          tf.tensor3d(values(3 * 5 * 7, 3), [3, 5, 7]),
          tf.tensor3d(values(3 * 9 * 7, 4), [3, 9, 7]),
          false,
          true,
        ),
      ],
      1e-4,
      1e-3,
    );
  });

  it.skipIf(skipReason !== undefined)(
    'a one-layer GPT step (loss and gradients, incl. gather grad) matches cpu',
    async () => {
      await compare(() => gptStep('tanh'), 1e-4, 1e-2);
    },
  );
});
