// initBackend: bad kinds are rejected with a typed error, every kind that works here starts
// with gradients registered, and 'auto' logs what it chose and why.
import * as tf from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import {
  assertSingleTfjsCore,
  EXPECTED_TFJS_CORE,
  initBackend,
  UnknownBackendError,
  type BackendKind,
} from '../src/index.ts';
import { quietLogger } from './helpers.ts';

describe('initBackend', () => {
  it('rejects an unknown kind, naming it and the expected ones', async () => {
    const err = await initBackend('cuda' as BackendKind, { logger: quietLogger }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownBackendError);
    expect((err as Error).message).toBe('unknown backend "cuda": expected one of auto, webgpu, tensorflow, wasm, cpu');
  });

  it.each(['cpu', 'wasm'] as const)('%s: starts, registers gradients and chained ops', async (kind) => {
    const info = await initBackend(kind, { logger: quietLogger });
    expect(info).toMatchObject({ name: kind, reason: `requested --backend ${kind}` });
    expect(tf.getBackend()).toBe(kind);
    const g = tf.grad((x: tf.Tensor) => tf.sum(tf.square(x)))(tf.tensor1d([1, -2, 3]));
    expect(Array.from(await g.data())).toEqual([2, -4, 6]);
    expect(Array.from(await tf.tensor1d([1, 2]).add(1).data())).toEqual([2, 3]);
  });

  it('auto chooses a backend that works and logs the choice with its reason', async () => {
    const logged: { obj: Record<string, unknown>; msg?: string }[] = [];
    const info = await initBackend('auto', {
      logger: { ...quietLogger, info: (obj, msg) => logged.push({ obj: obj as Record<string, unknown>, msg }) },
    });
    expect(tf.getBackend()).toBe(info.name);
    expect(info.reason).toMatch(/^auto: /);
    // On a machine with neither a hardware adapter nor tfjs-node, wasm is the fastest.
    if (!info.adapter && info.name !== 'tensorflow') {
      expect(info.name).toBe('wasm');
      expect(info.reason).toContain('passed over webgpu');
      expect(info.reason).toContain('tensorflow');
    }
    expect(logged).toContainEqual(
      expect.objectContaining({ obj: expect.objectContaining({ backend: info.name, reason: info.reason }) }),
    );
    const y = tf.matMul(tf.ones([4, 3]), tf.ones([3, 2]));
    expect(Array.from(await y.data())).toEqual(Array(8).fill(3));
  });
});

describe('one tfjs-core', () => {
  it('every backend package resolves the same @tensorflow/tfjs-core 4.22.0 file', () => {
    expect(() => assertSingleTfjsCore()).not.toThrow();
    expect(tf.version_core).toBe(EXPECTED_TFJS_CORE);
  });
});
