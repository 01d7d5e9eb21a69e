// Non-finite gradient guard: a Strategy wrapper that notices NaN or Inf in this rank's gradients,
// agrees with the other ranks (one all-reduce of a per-rank flag vector) and then fails the step on
// every rank with a NonFiniteGradientError naming the step and the ranks, or with `skip` drops it
// on every rank alike (saving and restoring the wrapped strategy's state). A wrapper, because the
// decision must be the same on every rank and come before any parameter moves. Where the wrapped
// strategy gates a non-finite update on the device (Strategy.gatesNonFinite), nothing is read
// before the update and the verdict comes with the step's one read-back (StepStats.later).
// Details: docs/internals.md#non-finite-guard
import * as tf from '@tensorflow/tfjs-core';
import type { ReduceOp } from '@zeroring/comm';
import type { NamedTensors } from './model.ts';
import { memoryStateSource } from './state-source.ts';
import { StepReadout } from './step-readout.ts';
import type { FinishStepOptions, StepLater, StepStats, Strategy } from './strategy.ts';
import { StrategyWrapper } from './strategy-wrapper.ts';

/** Non-finite gradients at a step, on the ranks named; the same error is raised on every rank. */
export class NonFiniteGradientError extends Error {
  override name = 'NonFiniteGradientError';
  constructor(
    /** 0-based index of the optimizer step whose gradients were not finite. */
    readonly step: number,
    /** Ranks whose local gradients held NaN or Inf. */
    readonly ranks: number[],
  ) {
    super(
      `non-finite gradients (NaN or Inf) at step ${step} on rank(s) ${ranks.join(', ')}; ` +
        'expected finite gradients (lower the learning rate, check the ' +
        'data, or pass --skip-nonfinite to skip such steps on all ranks)',
    );
  }
}

function skipMessage(step: number, ranks: number[]): string {
  return (
    `step ${step}: non-finite gradients (NaN or Inf) on rank(s) ${ranks.join(', ')}; ` +
    'step skipped on all ranks (parameters and optimizer state unchanged)'
  );
}

/** The one collective the guard needs (a ProcessGroup / TrainerComm has it). */
export interface NonFiniteComm {
  rank: number;
  worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: ReduceOp }): Promise<unknown>;
}

export interface NonFiniteGuardOptions {
  comm?: NonFiniteComm;
  /** Skip a non-finite step on every rank (true) or fail it with NonFiniteGradientError (false). */
  skip: boolean;
  /** Told about every skipped step. */
  warn?: (msg: string) => void;
  /**
   * Test hook (ZERORING_FAULT_NAN_AT_STEP, see faults.ts): make this rank's first gradient of
   * its K-th step in this process (0-based) NaN, so the detection path runs on real tensors.
   */
  poisonAtLocalStep?: number;
}

export class NonFiniteGuard extends StrategyWrapper {
  /** Steps skipped so far (0-based step indices). */
  readonly skipped: number[] = [];
  private probe: tf.Scalar | null = null;
  private localStep = 0;
  private poisoned = false;

  constructor(
    inner: Strategy,
    private readonly opts: NonFiniteGuardOptions,
  ) {
    super(inner);
  }

  override onBlockGrads(block: number, grads: NamedTensors): void | Promise<void> {
    if (this.opts.poisonAtLocalStep === this.localStep && !this.poisoned) {
      const name = Object.keys(grads)[0];
      if (name !== undefined) {
        const g = grads[name]!;
        grads[name] = tf.add(g, tf.scalar(Number.NaN));
        g.dispose();
        this.poisoned = true;
      }
    }
    const tensors = Object.values(grads);
    if (tensors.length > 0 && this.needsProbe()) {
      const next = tf.tidy(() => {
        let acc: tf.Tensor = this.probe ?? tf.scalar(0);
        for (const g of tensors) acc = tf.add(acc, tf.sum(tf.mul(g, 0)));
        return acc as tf.Scalar;
      });
      this.probe?.dispose();
      this.probe = next;
    }
    return this.inner.onBlockGrads(block, grads);
  }

  override async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    if (this.inner.gatesNonFinite) return this.gatedFinishStep(opts);
    // The flag's all-reduce queues behind the gradient all-reduces the inner strategy issued
    // during backward, so waiting for it is waiting on communication: count it in commMs, or
    // the wait would vanish from the metrics (the inner strategy would find its comm done).
    const local = this.probe ? (await this.probe.data())[0]! : 0;
    this.probe?.dispose();
    this.probe = null;
    this.localStep++;
    const start = performance.now();
    // The inner strategy's reductions still waiting for their read-backs go to the group first:
    // issued after them on every rank, the flags cannot pair with one rank's reduction.
    await this.inner.issued();
    const ranks = await this.badRanks(!Number.isFinite(local));
    const waitMs = (this.opts.comm?.worldSize ?? 1) > 1 ? performance.now() - start : 0;
    if (ranks.length === 0) {
      const stats = await this.inner.finishStep(opts);
      return { ...stats, commMs: stats.commMs + waitMs };
    }
    if (!this.opts.skip) throw new NonFiniteGradientError(opts.step, ranks);
    const before = await this.inner.saveState();
    const stats = await this.inner.finishStep(opts);
    await this.inner.loadState(memoryStateSource([before]));
    this.skipped.push(opts.step);
    this.opts.warn?.(skipMessage(opts.step, ranks));
    return { ...stats, commMs: stats.commMs + waitMs, gradNorm: Number.NaN };
  }

  /**
   * The step with the update gated on the device: the verdict is settled once the readout is
   * flushed (by the caller, or here when the caller gave none).
   */
  private async gatedFinishStep(opts: FinishStepOptions): Promise<StepStats> {
    const own = opts.readout ? undefined : new StepReadout();
    const readout = opts.readout ?? own!;
    try {
      const probe = this.probe;
      this.probe = null;
      const local = probe ? readout.add(probe) : undefined;
      this.localStep++;
      const stats = await this.inner.finishStep({ ...opts, readout, gateNonFinite: true });
      const later = this.settle(opts.step, stats, local);
      later.catch(() => undefined); // the caller awaits it after the flush; not unhandled meanwhile
      if (!own) return { ...stats, later };
      await own.flush();
      const l = await later;
      return { commMs: stats.commMs + (l.commMs ?? 0), optimMs: stats.optimMs, gradNorm: l.gradNorm };
    } finally {
      own?.dispose();
    }
  }

  /** After the flush: which ranks saw non-finite gradients, and what becomes of the step. */
  private async settle(step: number, stats: StepStats, local?: Promise<Float32Array>): Promise<StepLater> {
    const inner: StepLater = stats.later ? await stats.later : { gradNorm: stats.gradNorm, skipped: false };
    const mine = local ? !Number.isFinite((await local)[0]) : (inner.localNonFinite ?? inner.skipped);
    const start = performance.now();
    const ranks = await this.badRanks(mine);
    const commMs = (inner.commMs ?? 0) + ((this.opts.comm?.worldSize ?? 1) > 1 ? performance.now() - start : 0);
    if (ranks.length === 0 && !inner.skipped) return { ...inner, commMs };
    // A rank's non-finite gradient makes the averaged one non-finite too, so the gate held the
    // update back on every rank; a finite average of non-finite parts cannot happen in float.
    if (!this.opts.skip || !inner.skipped) throw new NonFiniteGradientError(step, ranks);
    this.skipped.push(step);
    this.opts.warn?.(skipMessage(step, ranks));
    return { gradNorm: Number.NaN, skipped: true, commMs };
  }

  /**
   * The probe is kept unless the strategy gates on the device: it then tells this rank's own
   * verdict (StepLater.localNonFinite), found where it sees the gradient anyway.
   */
  private needsProbe(): boolean {
    return !this.inner.gatesNonFinite;
  }

  override async dispose(): Promise<void> {
    this.probe?.dispose();
    this.probe = null;
    await this.inner.dispose();
  }

  /** Every rank learns which ranks saw non-finite gradients: a sum all-reduce of one flag per rank. */
  private async badRanks(mine: boolean): Promise<number[]> {
    const comm = this.opts.comm;
    if (!comm || comm.worldSize === 1) return mine ? [comm?.rank ?? 0] : [];
    const flags = new Float32Array(comm.worldSize);
    flags[comm.rank] = mine ? 1 : 0;
    await comm.allReduce(flags, { op: 'sum' });
    const out: number[] = [];
    flags.forEach((f, r) => f > 0 && out.push(r));
    return out;
  }
}
