// Registers every gradient that ships with tfjs-core, and the chained ops (t.add(u), ...).
//
// tfjs-core's Node entry (dist/tf-core.node.js, CommonJS) has neither: the @tensorflow/tfjs
// union package normally pulls in dist/register_all_gradients.js and
// dist/public/chained_ops/register_all_chained_ops.js, ES modules whose relative imports
// lack file extensions, which Node's ESM loader rejects. We add a resolve hook scoped to
// tfjs-core's dist folder that appends ".js", then import them. What they register goes into
// tfjs-core's globals (the gradient registry and the Tensor class are kept on globalThis),
// which the CommonJS instance everyone else imports reads, so there is still one engine,
// one kernel registry and one gradient registry in the process.
import { createRequire, register } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getGradient, Tensor } from '@tensorflow/tfjs-core';
// Types only: brings in the chained-op declarations (x.add(y): Tensor) that the runtime
// import below makes true, for every package that imports @zeroring/backend.
import type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';

const require = createRequire(import.meta.url);

let loading: Promise<void> | undefined;

function hookSource(distUrl: string): string {
  return `
const DIST = ${JSON.stringify(distUrl)};
export async function resolve(specifier, context, next) {
  if (context.parentURL?.startsWith(DIST) && specifier.startsWith('.') && !specifier.endsWith('.js')) {
    try { return await next(specifier + '.js', context); }
    catch { return next(specifier + '/index.js', context); }
  }
  return next(specifier, context);
}`;
}

function chainedOpsRegistered(): boolean {
  return typeof (Tensor.prototype as unknown as Record<string, unknown>).add === 'function';
}

/**
 * Idempotent; resolves once tf.grad/tf.grads work for every op tfjs-core knows and tensors
 * have their chained methods (x.add(y), x.reshape(s)).
 */
export function registerAllGradients(): Promise<void> {
  if (getGradient('GatherV2') !== undefined && chainedOpsRegistered()) return Promise.resolve();
  loading ??= (async () => {
    const distUrl = pathToFileURL(dirname(require.resolve('@tensorflow/tfjs-core')) + '/').href;
    register('data:text/javascript,' + encodeURIComponent(hookSource(distUrl)));
    await import(distUrl + 'register_all_gradients.js');
    await import(distUrl + 'public/chained_ops/register_all_chained_ops.js');
    if (getGradient('GatherV2') === undefined || !chainedOpsRegistered()) {
      throw new Error('registerAllGradients: tfjs-core gradients or chained ops did not reach the shared tfjs-core');
    }
  })();
  return loading;
}
