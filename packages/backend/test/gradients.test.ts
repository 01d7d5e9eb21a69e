// Both ways of loading tfjs-core's gradients and chained ops work: the cached esbuild bundle
// (the default) and the resolve-hook import of tfjs-core's ES modules (the fallback), each in
// a fresh process so neither sees the other's registrations.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = `
import { tf, initBackend } from ${JSON.stringify(fileURLToPath(new URL('../src/index.ts', import.meta.url)))};
await initBackend('cpu', { logger: { info() {}, warn() {}, debug() {} } });
const emb = tf.tensor2d([[1, 2], [3, 4], [5, 6]]);
const g = tf.grad((e) => tf.sum(tf.gather(e, tf.tensor1d([2, 2, 0], 'int32'))))(emb);
console.log(JSON.stringify({ grad: Array.from(await g.data()), chained: Array.from(await emb.add(1).data()) }));
`;

describe.each(['bundle', 'hook'])('gradients loaded via %s', (loader) => {
  it('gather gradient and chained ops work in a fresh process', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      env: { ...process.env, ZERORING_GRADIENTS_LOADER: loader },
      timeout: 110_000,
    });
    const out = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(out.grad).toEqual([1, 1, 0, 0, 2, 2]);
    expect(out.chained).toEqual([2, 3, 4, 5, 6, 7]);
  });
});
