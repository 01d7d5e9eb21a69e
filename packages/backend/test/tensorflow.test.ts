// The libtensorflow backend is an optional peer dependency that CI cannot install (its
// install script downloads libtensorflow). What can be checked everywhere: asking for it
// without it installed gives the typed error that says how to install it and why it is not
// installed by default; and an installed-but-broken package is not mistaken for a missing one.
import { describe, expect, it } from 'vitest';
import {
  initBackend,
  tensorflowInstalled,
  TensorflowNotInstalledError,
  BackendUnavailableError,
} from '../src/index.ts';
import { initTensorflow } from '../src/tensorflow.ts';
import { quietLogger } from './helpers.ts';

const installed = tensorflowInstalled();
if (installed) console.warn('tfjs-node is installed here: the "not installed" error test is skipped');

describe('tensorflow backend', () => {
  it.skipIf(installed)(
    'without tfjs-node(-gpu), initBackend("tensorflow") throws TensorflowNotInstalledError',
    async () => {
      const err = await initBackend('tensorflow', { logger: quietLogger }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TensorflowNotInstalledError);
      const e = err as TensorflowNotInstalledError;
      expect(e.name).toBe('TensorflowNotInstalledError');
      expect(e.backend).toBe('tensorflow');
      expect(e.tried).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
      expect(e.message).toContain('pnpm add @tensorflow/tfjs-node-gpu');
      expect(e.message).toContain('pnpm add @tensorflow/tfjs-node');
      expect(e.message).toMatch(/downloads libtensorflow/);
      expect(e.message).not.toContain('\n'); // one line, as the CLI prints it
    },
  );

  it('a package that resolves but fails to load is reported as broken, not as missing', async () => {
    const broken = new Error('libcudart.so.11.0: cannot open shared object file');
    const err = await initTensorflow(async () => {
      throw broken;
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendUnavailableError);
    expect(err).not.toBeInstanceOf(TensorflowNotInstalledError);
    expect((err as Error).message).toContain('@tensorflow/tfjs-node-gpu is installed but failed to load');
    expect((err as Error).cause).toBe(broken);
  });
});
