// The "naive" GPT: the same function and parameters as @zeroring/gpt's model, written the
// obvious tfjs way with autodiff for every gradient — tf.moments LayerNorm, tanh GELU, a 5-D
// head-split transpose, batched attention matmuls with transposeB, gather embedding. It is the
// baseline train-throughput.ts measures the optimised model against, in the same run.
import { tf } from '@zeroring/backend';
import { createGPT, type Block, type GPTConfig, type GPTModel, type NamedTensors } from '@zeroring/gpt';

type T2 = tf.Tensor2D;

function layerNorm(x: T2, g: tf.Tensor, b: tf.Tensor): T2 {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b) as T2;
}
const linear = (x: T2, w: tf.Tensor, b: tf.Tensor): T2 => tf.add(tf.matMul(x, w as T2), b) as T2;
const gelu = (x: T2): T2 =>
  tf.mul(
    tf.mul(x, 0.5),
    tf.add(1, tf.tanh(tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI)))),
  ) as T2;

function attention(p: NamedTensors, n: string, x: T2, B: number, T: number, H: number): T2 {
  const C = x.shape[1];
  const hs = C / H;
  const qkv = tf.transpose(
    tf.reshape(linear(x, p[`${n}.qkv.w`]!, p[`${n}.qkv.b`]!), [B, T, 3, H, hs]),
    [2, 0, 3, 1, 4],
  );
  const [q, k, v] = tf.unstack(tf.reshape(qkv, [3, B * H, T, hs])) as tf.Tensor3D[];
  const mask = tf.linalg.bandPart(tf.ones([T, T]), -1, 0);
  const scores = tf.where(
    tf.cast(mask, 'bool'),
    tf.mul(tf.matMul(q!, k!, false, true), 1 / Math.sqrt(hs)),
    tf.fill([B * H, T, T], -1e9),
  );
  const y = tf.reshape(tf.transpose(tf.reshape(tf.matMul(tf.softmax(scores), v!), [B, H, T, hs]), [0, 2, 1, 3]), [
    B * T,
    C,
  ]) as T2;
  return linear(y, p[`${n}.proj.w`]!, p[`${n}.proj.b`]!);
}

/** Same blocks, parameter names, shapes and initialisation as createGPT(cfg); naive forwards. */
export function createNaiveGPT(cfg: GPTConfig): GPTModel {
  const ref = createGPT(cfg);
  const { nEmbd: C, vocabSize: V, nHead: H } = cfg;
  const blocks: Block[] = ref.blocks.map((blk) => {
    if (blk.name === 'embed') {
      return {
        ...blk,
        forward: (p, ids) => {
          const [B, T] = ids.shape as [number, number];
          return tf.add(
            tf.reshape(tf.gather(p.wte!, tf.reshape(ids, [B * T])), [B, T, C]),
            tf.slice(p.wpe!, [0, 0], [T, C]),
          );
        },
      };
    }
    if (blk.name === 'head') {
      return {
        ...blk,
        forward: (p, x) => {
          const [B, T] = x.shape as [number, number];
          const h = layerNorm(tf.reshape(x, [B * T, C]) as T2, p['ln_f.g']!, p['ln_f.b']!);
          return tf.reshape(tf.matMul(h, p.wte as T2, false, true), [B, T, V]);
        },
      };
    }
    const n = blk.name;
    return {
      ...blk,
      forward: (p, input) => {
        const [B, T] = input.shape as [number, number];
        let x = tf.reshape(input, [B * T, C]) as T2;
        x = tf.add(x, attention(p, `${n}.attn`, layerNorm(x, p[`${n}.ln1.g`]!, p[`${n}.ln1.b`]!), B, T, H)) as T2;
        const h = gelu(
          linear(layerNorm(x, p[`${n}.ln2.g`]!, p[`${n}.ln2.b`]!), p[`${n}.mlp.fc.w`]!, p[`${n}.mlp.fc.b`]!),
        );
        x = tf.add(x, linear(h, p[`${n}.mlp.proj.w`]!, p[`${n}.mlp.proj.b`]!)) as T2;
        return tf.reshape(x, [B, T, C]);
      },
    };
  });
  const loss = (logits: tf.Tensor, targets: tf.Tensor): tf.Scalar =>
    tf.tidy(() => {
      const N = logits.size / V;
      const logp = tf.logSoftmax(tf.reshape(logits, [N, V]));
      return tf.neg(
        tf.mean(tf.sum(tf.mul(logp, tf.cast(tf.oneHot(tf.reshape(targets, [N]) as tf.Tensor1D, V), 'float32')), -1)),
      ) as tf.Scalar;
    });
  return { config: ref.config, blocks, loss, initParams: ref.initParams };
}
