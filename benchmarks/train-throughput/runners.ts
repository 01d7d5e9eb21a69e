// The training step train-throughput*.ts time: forward + backward + AdamW (@zeroring/train's),
// either with whole-model gradients or through the blockwise engine.
import { tf } from '@zeroring/backend';
import type { GPTModel, NamedTensors } from '@zeroring/gpt';
import { BlockwiseEngine, LocalStrategy, adamwUpdate, decays, DEFAULT_ADAMW, uniqueParams } from '@zeroring/train';

const LR = 1e-3;

/** One training setup: step() runs forward + backward + AdamW and resolves after the update is complete. */
export interface Runner {
  step(input: tf.Tensor, targets: tf.Tensor): Promise<number>;
  dispose(): Promise<void>;
}

/** Whole-model gradients with tf.valueAndGrads, then AdamW on every parameter. */
export function wholeModelRunner(model: GPTModel, init: Map<string, Float32Array>): Runner {
  const specs = uniqueParams(model);
  const params = new Map(specs.map((s) => [s.name, tf.tensor(init.get(s.name)!, s.shape)]));
  const m = new Map(specs.map((s) => [s.name, tf.zeros(s.shape)]));
  const v = new Map(specs.map((s) => [s.name, tf.zeros(s.shape)]));
  let t = 0;
  return {
    async step(input, targets) {
      const names = specs.map((s) => s.name);
      const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
        const named: NamedTensors = {};
        names.forEach((n, i) => (named[n] = ps[i]!));
        let x: tf.Tensor = input;
        for (const b of model.blocks) x = b.forward(named, x);
        return model.loss(x, targets);
      })(names.map((n) => params.get(n)!));
      t++;
      specs.forEach((s, i) => {
        const r = adamwUpdate(
          DEFAULT_ADAMW,
          params.get(s.name)!,
          grads[i]!,
          { m: m.get(s.name)!, v: v.get(s.name)! },
          LR,
          t,
          decays(s.shape),
        );
        tf.dispose([params.get(s.name)!, m.get(s.name)!, v.get(s.name)!, grads[i]!]);
        params.set(s.name, r.param);
        m.set(s.name, r.m);
        v.set(s.name, r.v);
      });
      const loss = (await value.data())[0]!;
      value.dispose();
      await params.get(specs.at(-1)!.name)!.data();
      return loss;
    },
    async dispose() {
      for (const map of [params, m, v]) for (const x of map.values()) x.dispose();
    },
  };
}

export async function engineRunner(model: GPTModel, init: Map<string, Float32Array>): Promise<Runner> {
  const engine = new BlockwiseEngine(model);
  const strategy = new LocalStrategy();
  await strategy.setup(model, init);
  let step = 0;
  return {
    async step(input, targets) {
      const loss = await engine.forwardBackward(input, targets, strategy, strategy);
      await strategy.finishStep({ lr: LR, step: ++step });
      return loss;
    },
    dispose: () => strategy.dispose(),
  };
}
