// Every tfjs package must run on one @tensorflow/tfjs-core: kernels, gradients and backends
// register into it, and a second copy (another version) silently misses them ("kernel not
// registered", tensors from a foreign engine). pnpm links one copy per version, so this
// checks that each backend package resolves the same tfjs-core file, and the same version.
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { realpathSync } from 'node:fs';
import { version_core } from '@tensorflow/tfjs-core';
import { BackendError } from './errors.ts';

const require = createRequire(import.meta.url);

export const EXPECTED_TFJS_CORE = '4.22.0';

export class TfjsCoreMismatchError extends BackendError {
  constructor(readonly copies: Record<string, string>) {
    super(
      `more than one @tensorflow/tfjs-core is in use (expected one, version ${EXPECTED_TFJS_CORE}): ` +
        Object.entries(copies)
          .map(([from, file]) => `${from} -> ${file}`)
          .join('; ') +
        '. Pin every @tensorflow/* package to 4.22.0 and reinstall.',
    );
  }
}

/** Throws TfjsCoreMismatchError when a backend package would load a different tfjs-core. */
export function assertSingleTfjsCore(
  packages: string[] = [
    '@tensorflow/tfjs-backend-cpu',
    '@tensorflow/tfjs-backend-wasm',
    '@tensorflow/tfjs-backend-webgpu',
  ],
): void {
  let own: string;
  try {
    own = realpathSync(require.resolve('@tensorflow/tfjs-core'));
  } catch {
    // No node_modules to resolve from: running from a bundle, which carries its own copy.
    if (version_core !== EXPECTED_TFJS_CORE) throw new TfjsCoreMismatchError({ bundled: version_core });
    return;
  }
  const copies: Record<string, string> = { '@zeroring/backend': own };
  for (const pkg of packages) {
    const from = dirname(require.resolve(pkg));
    copies[pkg] = realpathSync(require.resolve('@tensorflow/tfjs-core', { paths: [from] }));
  }
  const distinct = new Set(Object.values(copies));
  if (distinct.size !== 1 || version_core !== EXPECTED_TFJS_CORE) {
    throw new TfjsCoreMismatchError({ ...copies, version: version_core });
  }
}
