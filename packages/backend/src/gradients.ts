// Registers every gradient that ships with tfjs-core.
//
// tfjs-core's Node entry (dist/tf-core.node.js, CommonJS) has no gradients: the
// @tensorflow/tfjs union package normally pulls in dist/register_all_gradients.js, an ES
// module whose relative imports lack file extensions, which Node's ESM loader rejects. We
// add a resolve hook scoped to tfjs-core's dist folder that appends ".js", then import it.
// The gradients it registers go into tfjs-core's global gradient registry (kept on
// globalThis), which the CommonJS instance that everyone else imports reads, so there is
// still one engine, one kernel registry and one gradient registry in the process.
import { createRequire, register } from 'node:module';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getGradient } from '@tensorflow/tfjs-core';

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

/** Idempotent; resolves once tf.grad/tf.grads work for every op tfjs-core knows. */
export function registerAllGradients(): Promise<void> {
  if (getGradient('GatherV2') !== undefined) return Promise.resolve();
  loading ??= (async () => {
    const distUrl = pathToFileURL(dirname(require.resolve('@tensorflow/tfjs-core')) + '/').href;
    register('data:text/javascript,' + encodeURIComponent(hookSource(distUrl)));
    await import(distUrl + 'register_all_gradients.js');
    if (getGradient('GatherV2') === undefined) {
      throw new Error('registerAllGradients: tfjs-core gradients did not register into the shared registry');
    }
  })();
  return loading;
}
