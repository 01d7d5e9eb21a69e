// A strategy wrapped by another (the non-finite guard, say) must behave as the inner strategy in
// everything the wrapper does not change, including what the strategy says about itself: a
// wrapper that dropped `recomputeActivations` once made ZeRO-3 keep every activation. So wrappers
// extend this class, which forwards every member of Strategy, and override only what they change.
// Strategy's members are required (noSync is the one optional method, forwarded only when the
// inner strategy has it), so a member added to the interface fails to compile here until it is
// forwarded.
import type { Phase } from './engine.ts';
import type { BlockModel, NamedTensors } from './model.ts';
import type { StateSource } from './state-types.ts';
import type { FinishStepOptions, MemoryReport, ShardState, StepStats, Strategy } from './strategy.ts';

export abstract class StrategyWrapper implements Strategy {
  readonly noSync?: <T>(fn: () => T | Promise<T>) => Promise<T>;

  constructor(readonly inner: Strategy) {
    if (inner.noSync) this.noSync = (fn) => inner.noSync!(fn);
  }

  get name(): string {
    return this.inner.name;
  }

  get recomputeActivations(): boolean {
    return this.inner.recomputeActivations;
  }

  get gatesNonFinite(): boolean {
    return this.inner.gatesNonFinite;
  }

  setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    return this.inner.setup(model, initialParams);
  }

  acquire(block: number, phase: Phase): NamedTensors | Promise<NamedTensors> {
    return this.inner.acquire(block, phase);
  }

  release(block: number, phase: Phase): void | Promise<void> {
    return this.inner.release(block, phase);
  }

  onBlockGrads(block: number, grads: NamedTensors): void | Promise<void> {
    return this.inner.onBlockGrads(block, grads);
  }

  issued(): Promise<void> {
    return this.inner.issued();
  }

  finishStep(opts: FinishStepOptions): Promise<StepStats> {
    return this.inner.finishStep(opts);
  }

  fullParams(): Promise<Map<string, Float32Array>> {
    return this.inner.fullParams();
  }

  memory(): MemoryReport {
    return this.inner.memory();
  }

  saveState(): Promise<ShardState> {
    return this.inner.saveState();
  }

  loadState(source: StateSource): Promise<void> {
    return this.inner.loadState(source);
  }

  dispose(): Promise<void> {
    return this.inner.dispose();
  }
}
