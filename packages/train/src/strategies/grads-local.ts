// The gradient reduction of one process: none; the gradients are summed where they are.
import type { NamedTensors } from '../model.ts';
import type { DeviceGrads } from './grads-device.ts';
import type { FullGradReducer } from './parts.ts';

/** One process: nothing to reduce, the gradients are summed where they are. */
export class LocalGrads implements FullGradReducer {
  setup(): void {}

  onBlockGrads(_block: number, named: NamedTensors, grads: DeviceGrads): void {
    for (const [name, g] of Object.entries(named)) grads.add(name, g);
  }

  async wait(): Promise<number> {
    return 0;
  }

  take(): void {}

  async issued(): Promise<void> {}

  afterStep(): void {}

  /** Nothing here sees the gradients on the host: the optimizer's own check is this rank's. */
  localNonFinite(): undefined {
    return undefined;
  }

  report(): void {}

  async dispose(): Promise<void> {}
}
