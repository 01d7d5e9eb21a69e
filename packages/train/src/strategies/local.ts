// LocalStrategy: one process, everything resident on the device. It is the composition
//   parameters  replicated (one rank: plain tensors, handed to the engine as they are)
//   gradients   not reduced: summed on the device as the engine emits them
//   optimizer   AdamW on the device over every parameter, with optional global-norm clipping
// and the reference the distributed strategies must match, so it does the plainest possible thing.
import type { AdamWConfig } from '../optim/adamw.ts';
import { LocalGrads } from './grads-local.ts';
import { ReplicatedStrategy } from './replicated.ts';

export { clipCoefficient, globalSquaredNorm } from './clip.ts';

export interface LocalStrategyOptions {
  adamw?: Partial<AdamWConfig>;
}

export class LocalStrategy extends ReplicatedStrategy {
  readonly name = 'local';

  constructor(opts: LocalStrategyOptions = {}) {
    super({ grads: new LocalGrads(), adamw: opts.adamw });
  }
}
