// Registers every gradient that ships with tfjs-core, and the chained ops (t.add(u), ...), which
// tfjs-core's Node entry lacks: their ES-module entry points do not load in Node's ESM loader and
// are slow file by file. First choice: bundle them once with esbuild into a cached CommonJS file
// (~100 ms to require); fallback: a resolve hook that appends ".js". Either way they register into
// tfjs-core's globals: still one engine and one kernel and gradient registry.
// Details: docs/internals.md#gradient-registration
import { createHash } from 'node:crypto';
import { existsSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getGradient, Tensor, version_core } from '@tensorflow/tfjs-core';
// Types only: brings in the chained-op declarations (x.add(y): Tensor) that the runtime
// loading below makes true, for every package that imports @zeroring/backend.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';

const require = createRequire(import.meta.url);
const ENTRIES = ['./register_all_gradients.js', './public/chained_ops/register_all_chained_ops.js'];

let loading: Promise<void> | undefined;

function registered(): boolean {
  const chained = typeof (Tensor.prototype as unknown as Record<string, unknown>).add === 'function';
  return chained && getGradient('GatherV2') !== undefined;
}

interface Esbuild {
  build(options: Record<string, unknown>): Promise<{ outputFiles?: { text: string }[] }>;
}

function findEsbuild(): Esbuild | undefined {
  for (const from of [import.meta.url, 'tsx/package.json']) {
    try {
      const base = from === import.meta.url ? require : createRequire(require.resolve(from));
      return base('esbuild') as Esbuild;
    } catch {
      // not reachable from here; try the next place
    }
  }
  return undefined;
}

async function loadBundled(distDir: string): Promise<boolean> {
  const key = createHash('sha256').update(`${distDir}\0${version_core}\0${process.version}`).digest('hex').slice(0, 16);
  const file = join(tmpdir(), `zeroring-tfjs-core-${version_core}-gradients-${key}.cjs`);
  if (!existsSync(file)) {
    const esbuild = findEsbuild();
    if (!esbuild) return false;
    const out = await esbuild.build({
      stdin: { contents: ENTRIES.map((e) => `import '${e}';`).join('\n'), resolveDir: distDir, sourcefile: 'entry.js' },
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      write: false,
      logLevel: 'silent',
    });
    const text = out.outputFiles?.[0]?.text;
    if (!text) return false;
    // Written under a unique name and renamed: workers starting together may race here.
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, file);
  }
  require(file);
  return true;
}

async function loadWithHook(distDir: string): Promise<void> {
  const distUrl = pathToFileURL(distDir + '/').href;
  const hook = `
const DIST = ${JSON.stringify(distUrl)};
export async function resolve(specifier, context, next) {
  if (context.parentURL?.startsWith(DIST) && specifier.startsWith('.') && !specifier.endsWith('.js')) {
    try { return await next(specifier + '.js', context); }
    catch { return next(specifier + '/index.js', context); }
  }
  return next(specifier, context);
}`;
  register('data:text/javascript,' + encodeURIComponent(hook));
  for (const e of ENTRIES) await import(new URL(e, distUrl).href);
}

/**
 * Idempotent; resolves once tf.grad/tf.grads work for every op tfjs-core knows and tensors
 * have their chained methods (x.add(y), x.reshape(s)).
 */
export function registerAllGradients(): Promise<void> {
  if (registered()) return Promise.resolve();
  loading ??= (async () => {
    const distDir = dirname(require.resolve('@tensorflow/tfjs-core'));
    // ZERORING_GRADIENTS_LOADER=hook skips the bundle (to test, or if a bundle misbehaves).
    const bundled = process.env.ZERORING_GRADIENTS_LOADER !== 'hook' && (await loadBundled(distDir).catch(() => false));
    if (!bundled || !registered()) await loadWithHook(distDir);
    if (!registered()) {
      throw new Error('registerAllGradients: tfjs-core gradients or chained ops did not reach the shared tfjs-core');
    }
  })();
  return loading;
}
