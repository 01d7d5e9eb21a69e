// tape.ts keeps a block's forward on tfjs's gradient tape through private engine members
// (startTape/endTape, state.activeTape, state.gradientDepth, the tape nodes' fields), which no
// semver range protects. These checks fail first, naming what changed, when tfjs-core is
// upgraded: the installed tfjs-core must be the exact version tape.ts was written against,
// every package that depends on it must pin exactly that version, and the engine must carry
// every member, as must a node recorded by a real kernel.
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '@zeroring/backend';
import { beforeAll, describe, expect, it } from 'vitest';
import { TAPE_INTERNALS, TFJS_CORE_VERSION, backwardOf, missingEngineInternals, recordForward } from '../src/tape.ts';

const root = new URL('../../../', import.meta.url);
const require = createRequire(new URL('../src/tape.ts', import.meta.url));

beforeAll(async () => {
  await initBackend('cpu');
});

describe('tfjs engine internals tape.ts uses', () => {
  it(`tfjs-core is exactly ${TFJS_CORE_VERSION}, installed and pinned in every package.json that lists it`, () => {
    const installed = (require('@tensorflow/tfjs-core/package.json') as { version: string }).version;
    expect(installed, `installed tfjs-core ${installed}, tape.ts was written for ${TFJS_CORE_VERSION}`).toBe(
      TFJS_CORE_VERSION,
    );
    expect(tf.version_core, 'the tfjs-core loaded at run time').toBe(TFJS_CORE_VERSION);
    const pinned: string[] = [];
    for (const dir of readdirSync(new URL('packages/', root))) {
      const pkg = JSON.parse(readFileSync(new URL(`packages/${dir}/package.json`, root), 'utf8')) as {
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      const spec = pkg.dependencies?.['@tensorflow/tfjs-core'] ?? pkg.devDependencies?.['@tensorflow/tfjs-core'];
      if (spec === undefined) continue;
      pinned.push(dir);
      expect(spec, `packages/${dir}/package.json must pin @tensorflow/tfjs-core to exactly ${TFJS_CORE_VERSION}`).toBe(
        TFJS_CORE_VERSION,
      );
    }
    expect(pinned).toContain('train');
  });

  it('the engine and a recorded tape node have every member tape.ts reads', () => {
    const eng = tf.engine() as unknown as Record<string, unknown> & { state: Record<string, unknown> };
    for (const m of TAPE_INTERNALS.engineMethods) expect(typeof eng[m], `engine.${m}() is gone`).toBe('function');
    expect(typeof eng.state.gradientDepth, 'engine.state.gradientDepth is gone').toBe('number');
    // Every member, activeTape included (it exists only while recording), as recordForward checks them.
    expect(missingEngineInternals()).toEqual([]);
    const rec = recordForward(() => tf.mul(tf.scalar(3), tf.scalar(4)));
    expect(rec.tape.length, 'recording one kernel left no tape node').toBeGreaterThan(0);
    for (const f of TAPE_INTERNALS.node) expect(rec.tape[0], `tape node .${f} is gone`).toHaveProperty(f);
    expect(typeof rec.tape[0]!.gradient, 'tape node .gradient is no longer a function').toBe('function');
    rec.output.dispose();
    // The checks leave no tensor behind and no tape switched on.
    const before = tf.memory().numTensors;
    expect(missingEngineInternals()).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
    expect((tf.engine() as unknown as { state: { activeTape: unknown } }).state.activeTape).toBeNull();
  });

  it('a recorded forward gives the gradient tf.grads gives (the internals still mean what they did)', async () => {
    const x = tf.tensor1d([1, -2, 3]);
    const w = tf.tensor1d([0.5, 0.25, -1]);
    const f = (a: tf.Tensor, b: tf.Tensor): tf.Tensor => tf.sum(tf.tanh(tf.mul(a, b)));
    const rec = recordForward(() => f(x, w));
    const dy = tf.scalar(1);
    const [gx, gw] = backwardOf(rec, [x, w], dy);
    const [rx, rw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => f(a, b))([x, w]);
    expect(await gx!.data()).toEqual(await rx!.data());
    expect(await gw!.data()).toEqual(await rw!.data());
    tf.dispose([x, w, dy, gx!, gw!, rx!, rw!, rec.output]);
  });
});
