// A pipeline stage's strategy: the strategy the user chose (DDP or ZeRO-1 over the stage's
// data-parallel group, or local) holding only the stage's parameters, wrapped with what the
// pipeline adds to it.
//
// A parameter read on two stages (GPT's tied embedding: the token embedding on the first stage,
// the output projection on the last) belongs to the lowest stage that reads it: its strategy
// holds it with its optimizer state, and the later stages keep a copy. A copy's gradient, summed
// over the step's micro-batches, goes to the owner, which adds it to its own gradient of the
// step's last micro-batch, so the owner's strategy reduces and updates one complete gradient;
// after the update the owner sends the new value back. Megatron instead keeps the parameter and
// its optimizer state on both stages and all-reduces the gradient between them: the same bytes
// cross, but here the optimizer state and the checkpoint hold the parameter once, and the global
// gradient norm counts it once.
//
// The global norm for clipping is the sum of every stage's squared norm, added over the
// pipeline's group (FinishStepOptions.squaredNormAcross); the full parameters are every stage's,
// broadcast over it in stage order.
// Details: docs/internals.md#pipeline-training
import * as tf from '@tensorflow/tfjs-core';
import type { ReduceOp } from '@zeroring/comm';
import type { Phase } from '../engine-contract.ts';
import { uniqueParams, type BlockModel, type NamedTensors } from '../model.ts';
import type { StateSource } from '../state-types.ts';
import type { FinishStepOptions, MemoryReport, StepStats, Strategy } from '../strategy.ts';
import { StrategyWrapper } from '../strategy-wrapper.ts';
import type { StageCut } from './cut.ts';
import type { PipeComm } from './executor.ts';
import { stageModel } from './stage.ts';

/** What a stage needs of its pipeline's process group: point to point, and two collectives. */
export interface PipelineComm extends PipeComm {
  rank: number;
  worldSize: number;
  allReduce(buf: Float32Array, opts?: { op?: ReduceOp }): Promise<unknown>;
  broadcast(buf: Float32Array, root: number): Promise<unknown>;
}

/** A parameter that blocks on more than one stage read. */
interface SharedParam {
  name: string;
  shape: number[];
  owner: number;
  /** The later stages that read it, each holding a copy. */
  users: number[];
}

export interface StagePlace {
  /** This rank's stage (its rank in the pipeline), and the pipeline's stage count P. */
  stage: number;
  stages: number;
  /**
   * Every model stage's blocks (cutStages), P of them, or P·V with V chunks per rank (the
   * interleaved schedule): model stage g runs on stage g mod P.
   */
  cuts: readonly StageCut[];
  /** Micro-batches per step: an owner adds the copies' gradients to its own of the last one. */
  micros: number;
}

export class PipelineStageStrategy extends StrategyWrapper {
  /** Each stage's own parameters (those it owns), by stage. */
  private owned: string[][] = [];
  private shared: SharedParam[] = [];
  private shapes = new Map<string, number[]>();
  /** Copies of parameters owned by an earlier stage, with the block of this stage that reads each. */
  private readonly copies = new Map<string, tf.Tensor>();
  private readonly copyBlocks = new Map<number, string[]>();
  /** This step's gradients of the copies (summed), and how many micro-batches' gradients each owned one has had. */
  private readonly copyGrads = new Map<string, tf.Tensor>();
  private readonly counts = new Map<string, number>();
  private readonly sends: Array<Promise<unknown>> = [];
  /** This stage's blocks as the inner strategy holds them: the copies left out. */
  private held?: BlockModel;

  constructor(
    inner: Strategy,
    private readonly place: StagePlace,
    private readonly comm: PipelineComm,
  ) {
    super(inner);
  }

  override get name(): string {
    return `pipeline-${this.inner.name}`;
  }

  private get stage(): number {
    return this.place.stage;
  }

  /** `model` is the whole model: the inner strategy gets this stage's blocks, without the copies. */
  override async setup(model: BlockModel, initialParams: Map<string, Float32Array>): Promise<void> {
    const { cuts, stages: P } = this.place;
    const stages = Array.from({ length: P }, (_, s) => rankModel(model, cuts, P, s));
    const ownerOf = new Map<string, number>();
    const usersOf = new Map<string, number[]>();
    stages.forEach((m, s) => {
      for (const spec of uniqueParams(m)) {
        this.shapes.set(spec.name, [...spec.shape]);
        if (!ownerOf.has(spec.name)) ownerOf.set(spec.name, s);
        else usersOf.set(spec.name, [...(usersOf.get(spec.name) ?? []), s]);
      }
    });
    this.owned = stages.map((m, s) => uniqueParams(m).flatMap((p) => (ownerOf.get(p.name) === s ? [p.name] : [])));
    this.shared = [...usersOf].map(([name, users]) => ({
      name,
      shape: this.shapes.get(name)!,
      owner: ownerOf.get(name)!,
      users,
    }));
    const own = stages[this.stage]!;
    const mine = new Set(this.owned[this.stage]);
    own.blocks.forEach((b, i) => {
      const names = b.params.filter((p) => !mine.has(p.name)).map((p) => p.name);
      if (names.length > 0) this.copyBlocks.set(i, names);
    });
    for (const names of this.copyBlocks.values()) {
      for (const name of names) this.copies.set(name, tf.tensor(initialParams.get(name)!, this.shapes.get(name)));
    }
    this.held = {
      ...own,
      blocks: own.blocks.map((b) => ({ ...b, params: b.params.filter((p) => mine.has(p.name)) })),
    };
    await this.inner.setup(this.held, new Map([...initialParams].filter(([name]) => mine.has(name))));
  }

  override async acquire(block: number, phase: Phase): Promise<NamedTensors> {
    const got = await this.inner.acquire(block, phase);
    const names = this.copyBlocks.get(block);
    if (!names) return got;
    return { ...got, ...Object.fromEntries(names.map((n) => [n, this.copies.get(n)!])) };
  }

  override async onBlockGrads(block: number, grads: NamedTensors): Promise<void> {
    for (const name of Object.keys(grads)) {
      const p = this.shared.find((x) => x.name === name);
      if (!p) continue;
      if (p.owner === this.stage) {
        const count = (this.counts.get(name) ?? 0) + 1;
        this.counts.set(name, count);
        if (count === this.place.micros) grads[name] = await this.addCopyGradients(p, grads[name]!);
        continue;
      }
      const sum = this.copyGrads.get(name);
      this.copyGrads.set(name, sum ? tf.add(sum, grads[name]!) : grads[name]!);
      if (sum) {
        sum.dispose();
        grads[name]!.dispose();
      }
      delete grads[name];
    }
    if (Object.keys(grads).length > 0) await this.inner.onBlockGrads(block, grads);
  }

  /**
   * Sends the step's gradients of the copies to their owners: after the stage's last backward,
   * so on a link that also carries activation gradients they come after the last of those, which
   * the owner receives before the backward that takes them.
   */
  async sendCopyGradients(): Promise<void> {
    for (const p of this.shared) {
      const sum = this.copyGrads.get(p.name);
      if (!sum) continue;
      this.copyGrads.delete(p.name);
      const values = (await sum.data()) as Float32Array;
      sum.dispose();
      this.sends.push(this.comm.isend(values, p.owner));
    }
  }

  /** The owner's gradient of the last micro-batch plus every copy's gradient of the whole step. */
  private async addCopyGradients(p: SharedParam, own: tf.Tensor): Promise<tf.Tensor> {
    let total = own;
    for (const user of p.users) {
      const buf = new Float32Array(own.size);
      await this.comm.recv(buf, user);
      const next = tf.add(total, tf.tensor(buf, own.shape));
      total.dispose();
      total = next;
    }
    return total;
  }

  override async finishStep(opts: FinishStepOptions): Promise<StepStats> {
    await Promise.all(this.sends.splice(0));
    this.counts.clear();
    const stats = await this.inner.finishStep({ ...opts, squaredNormAcross: (sq) => this.sumOverStages(sq) });
    if (!stats.later) {
      await this.refreshCopies();
      return stats;
    }
    // The update is read back with the step's readout, which the trainer flushes before awaiting this.
    const later = stats.later.then(async (l) => {
      await this.refreshCopies();
      return l;
    });
    return { ...stats, later };
  }

  /** Float32 over the wire, as the strategies' own norm reductions are. */
  private async sumOverStages(squared: number): Promise<number> {
    const buf = Float32Array.of(squared);
    await this.comm.allReduce(buf, { op: 'sum' });
    return buf[0]!;
  }

  /** The owners send their parameters' values to the stages holding copies (collective over the pipeline). */
  private async refreshCopies(): Promise<void> {
    const sends: Array<Promise<unknown>> = [];
    for (const p of this.shared) {
      if (p.owner === this.stage) {
        const values = await this.ownValue(p.name);
        for (const user of p.users) sends.push(this.comm.isend(values, user));
      } else if (p.users.includes(this.stage)) {
        const buf = new Float32Array(this.copies.get(p.name)!.size);
        await this.comm.recv(buf, p.owner);
        this.copies.get(p.name)!.dispose();
        this.copies.set(p.name, tf.tensor(buf, p.shape));
      }
    }
    await Promise.all(sends);
  }

  /** The current value of a parameter this stage owns, as its strategy gives it to a forward. */
  private async ownValue(name: string): Promise<Float32Array> {
    const block = this.held!.blocks.findIndex((b) => b.params.some((p) => p.name === name));
    const got = await this.inner.acquire(block, 'forward');
    try {
      return Float32Array.from((await got[name]!.data()) as Float32Array);
    } finally {
      await this.inner.release(block, 'forward');
    }
  }

  /** Every parameter of the whole model: each stage's own, broadcast over the pipeline in stage order. */
  override async fullParams(): Promise<Map<string, Float32Array>> {
    const mine = await this.inner.fullParams();
    const out = new Map<string, Float32Array>();
    for (const [s, names] of this.owned.entries()) {
      const sizes = names.map((n) => this.shapes.get(n)!.reduce((a, d) => a * d, 1));
      const buf = new Float32Array(sizes.reduce((a, n) => a + n, 0));
      if (s === this.stage) {
        let at = 0;
        names.forEach((n, i) => {
          buf.set(mine.get(n)!, at);
          at += sizes[i]!;
        });
      }
      await this.comm.broadcast(buf, s);
      let at = 0;
      names.forEach((n, i) => {
        out.set(n, buf.slice(at, at + sizes[i]!));
        at += sizes[i]!;
      });
    }
    return out;
  }

  override async loadState(source: StateSource): Promise<void> {
    await this.inner.loadState(source);
    await this.refreshCopies();
  }

  override memory(): MemoryReport {
    const report = this.inner.memory();
    let bytes = 0;
    for (const t of this.copies.values()) bytes += 4 * t.size;
    const params = report.params ?? { device: 0, host: 0 };
    return { ...report, params: { ...params, device: params.device + bytes } };
  }

  override async dispose(): Promise<void> {
    tf.dispose([...this.copies.values(), ...this.copyGrads.values()]);
    this.copies.clear();
    this.copyGrads.clear();
    await this.inner.dispose();
  }
}

/** The model stages that run on `stage` (its chunks, in order), each a stage model (stageModel). */
export function chunkModels(model: BlockModel, cuts: readonly StageCut[], stages: number, stage: number): BlockModel[] {
  return cuts.flatMap((c, g) => (g % stages === stage ? [stageModel(model, c.first, c.end)] : []));
}

/** One stage's chunks as one model: their blocks one after another (block indices offset by chunk). */
export function rankModel(model: BlockModel, cuts: readonly StageCut[], stages: number, stage: number): BlockModel {
  const chunks = chunkModels(model, cuts, stages, stage);
  return { ...chunks[0]!, blocks: chunks.flatMap((m) => m.blocks) };
}
