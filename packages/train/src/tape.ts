// A block's forward recorded on TensorFlow.js's gradient tape, and its backward run later, as
// torch keeps its autograd graph: tf.grads alone would make the engine run every forward twice.
// tfjs exports neither its tape walk nor startTape/endTape, so they are reached through a small
// typed view of the engine; tfjs-core is pinned (TFJS_CORE_VERSION), the first recording checks
// the members (TAPE_INTERNALS), and test/tape-internals.test.ts checks the same.
// Details: docs/internals.md#tape
import * as tf from '@tensorflow/tfjs-core';

/** The tfjs-core release whose engine internals this module uses (package.json pins exactly this). */
export const TFJS_CORE_VERSION = '4.22.0';

/** tfjs-core's private engine members this module relies on. */
export const TAPE_INTERNALS = {
  /** Engine methods that switch recording on and off. */
  engineMethods: ['startTape', 'endTape'],
  /** Engine state: how deep in tf.grads we are, and the tape being recorded. */
  state: ['gradientDepth', 'activeTape'],
  /** Fields of a recorded tape node that the backward walk reads. */
  node: ['id', 'kernelName', 'inputs', 'outputs', 'gradient', 'saved'],
} as const;

/** The part of a tfjs tape node this module reads (tfjs-core's TapeNode). */
interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  gradient?: (dys: Array<tf.Tensor | null>) => Record<string, () => tf.Tensor>;
  saved?: tf.Tensor[];
}

interface EngineInternals {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  startTape(): void;
  endTape(): void;
}

let internalsChecked = false;

/** The engine's private view, checked once per process against TAPE_INTERNALS. */
function engine(): EngineInternals {
  const eng = tf.engine() as unknown as EngineInternals;
  if (!internalsChecked) {
    const missing = missingEngineInternals();
    if (missing.length > 0) {
      throw new Error(
        `tfjs engine internals changed: ${missing.join(', ')} missing, expected those of ` +
          `@tensorflow/tfjs-core ${TFJS_CORE_VERSION} (tape.ts records forwards with them)`,
      );
    }
    internalsChecked = true;
  }
  return eng;
}

/**
 * The members of TAPE_INTERNALS that the current tfjs engine lacks (empty when all are there).
 * Engine and state members are checked directly; tape node fields by recording one tiny kernel.
 */
export function missingEngineInternals(): string[] {
  const eng = tf.engine() as unknown as Record<string, unknown> & { state?: Record<string, unknown> };
  const missing: string[] = [];
  for (const m of TAPE_INTERNALS.engineMethods) if (typeof eng[m] !== 'function') missing.push(`engine.${m}()`);
  const state = eng.state;
  if (!state || typeof state.gradientDepth !== 'number') missing.push('engine.state.gradientDepth');
  if (missing.length > 0) return missing;
  const view = eng as unknown as EngineInternals;
  if (view.state.gradientDepth !== 0) return missing; // inside tf.grads: the tape is not ours to touch
  view.startTape();
  let node: Record<string, unknown> | undefined;
  let out: tf.Tensor | undefined;
  const x = tf.scalar(2);
  try {
    // activeTape exists only while recording, as an array of nodes.
    if (!Array.isArray(view.state.activeTape)) missing.push('engine.state.activeTape (an array while recording)');
    out = tf.tidy(() => tf.mul(x, x));
    node = view.state.activeTape?.[0] as Record<string, unknown> | undefined;
  } finally {
    view.endTape();
    const tape = view.state.activeTape ?? [];
    view.state.activeTape = null;
    disposeSaved(tape);
    tf.dispose([x, out]);
  }
  if (missing.length > 0) return missing;
  if (!node) return ['a recorded tape node (engine.state.activeTape stays empty)'];
  for (const f of TAPE_INTERNALS.node) if (!(f in node)) missing.push(`tape node .${f}`);
  if (typeof node.gradient !== 'function' && !missing.includes('tape node .gradient')) {
    missing.push('tape node .gradient (a function)');
  }
  return missing;
}

/** A forward whose tape is kept for one later `backwardOf`; opaque outside this module. */
export interface RecordedForward {
  /** The forward's result, owned by the caller. */
  readonly output: tf.Tensor;
  /** @internal */
  readonly tape: TapeNode[];
}

/** Frees what the tape's kernels saved for backward (the activations it kept alive). */
export function discardRecording(rec: RecordedForward): void {
  disposeSaved(rec.tape);
}

function disposeSaved(tape: TapeNode[]): void {
  for (const node of tape) for (const t of node.saved ?? []) t.dispose();
  tape.length = 0;
}

/**
 * Bytes of distinct tensor data that `recs` keep alive for backward, plus that of `also`, not
 * counting data shared with `exclude` (parameters saved by matmuls, for instance). Clones share
 * data, so this counts data buffers, not tensors (tf.memory().numBytes counts tensors).
 */
export function keptBytes(recs: Iterable<RecordedForward>, also: tf.Tensor[], exclude: tf.Tensor[]): number {
  const seen = new Set<object>(exclude.map((t) => t.dataId));
  let bytes = 0;
  const count = (t: tf.Tensor): void => {
    if (seen.has(t.dataId)) return;
    seen.add(t.dataId);
    bytes += t.size * tf.util.bytesPerElement(t.dtype);
  };
  for (const rec of recs) for (const node of rec.tape) for (const t of node.saved ?? []) count(t);
  also.forEach(count);
  return bytes;
}

/**
 * Runs `f` once with the gradient tape on and keeps the tape, so that `backwardOf` can later
 * give gradients of its result without running `f` again. Intermediate tensors are freed as in
 * tf.tidy, except those the kernels saved for their gradients.
 */
export function recordForward(f: () => tf.Tensor): RecordedForward {
  const eng = engine();
  if (eng.state.gradientDepth !== 0) {
    throw new Error('recordForward: called inside another gradient computation (tf.grads), expected none');
  }
  eng.startTape();
  let output: tf.Tensor | undefined;
  let tape: TapeNode[] = [];
  try {
    output = tf.tidy(f);
  } finally {
    eng.endTape();
    tape = eng.state.activeTape ?? [];
    eng.state.activeTape = null;
    if (!output) disposeSaved(tape); // f threw
  }
  return { output, tape };
}

/**
 * Gradients of `rec.output` with respect to `xs` (tensors the recorded forward used, by
 * identity), seeded with `dy`; returned in the order of `xs`, owned by the caller. Consumes the
 * recording: its saved tensors are freed, also when this throws.
 */
export function backwardOf(rec: RecordedForward, xs: tf.Tensor[], dy: tf.Tensor): tf.Tensor[] {
  try {
    const nodes = nodesFromXsToY(rec.tape, xs, rec.output);
    return tf.tidy(() => {
      const grads = new Map<number, tf.Tensor>([[rec.output.id, dy]]);
      backpropagate(grads, nodes);
      return xs.map((x) => {
        const g = grads.get(x.id);
        if (!g) {
          throw new Error(`backwardOf: the recorded forward does not depend on input ${x.id} (shape [${x.shape}])`);
        }
        return g === dy ? tf.clone(g) : g; // the caller owns dy and the gradients apart
      });
    });
  } finally {
    discardRecording(rec);
  }
}

/** The tape nodes on a path from some x to y, with inputs pruned to those that depend on an x. */
function nodesFromXsToY(tape: TapeNode[], xs: tf.Tensor[], y: tf.Tensor): TapeNode[] {
  const fromX = new Set(xs.map((x) => x.id));
  const nodesFromX = new Set<number>();
  for (const node of tape) {
    if (Object.values(node.inputs).some((t) => fromX.has(t.id))) {
      for (const o of node.outputs) fromX.add(o.id);
      nodesFromX.add(node.id);
    }
  }
  const leadsToY = new Set([y.id]);
  const nodesToY = new Set<number>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i];
    if (node.outputs.some((o) => leadsToY.has(o.id))) {
      for (const t of Object.values(node.inputs)) leadsToY.add(t.id);
      nodesToY.add(node.id);
    }
  }
  const out: TapeNode[] = [];
  for (const node of tape) {
    if (!nodesFromX.has(node.id) || !nodesToY.has(node.id)) continue;
    const inputs: Record<string, tf.Tensor> = {};
    for (const [name, t] of Object.entries(node.inputs)) if (fromX.has(t.id)) inputs[name] = t;
    out.push({ ...node, inputs });
  }
  return out;
}

/** Reverse walk of `nodes`, accumulating each input's gradient into `grads` (by tensor id). */
function backpropagate(grads: Map<number, tf.Tensor>, nodes: TapeNode[]): void {
  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (!node.gradient) {
      throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
    }
    const inputGradients = node.gradient(node.outputs.map((o) => grads.get(o.id) ?? null));
    for (const [name, x] of Object.entries(node.inputs)) {
      if (!(name in inputGradients)) {
        throw new Error(
          `Cannot backprop through input ${name} of ${node.kernelName}; ` +
            `gradients exist for ${Object.keys(inputGradients)}.`,
        );
      }
      const dx = tf.tidy(() => inputGradients[name]());
      const of = `The gradient of ${node.kernelName}'s input ${name}`;
      if (dx.dtype !== 'float32') throw new Error(`${of} has dtype ${dx.dtype}, expected float32.`);
      if (!tf.util.arraysEqual(dx.shape, x.shape)) {
        throw new Error(`${of} has shape [${dx.shape}], expected the input's [${x.shape}].`);
      }
      // As tfjs does: the previous sum is freed at once, dx with the enclosing tidy (a gradient
      // function may hand the same tensor to several inputs).
      const prev = grads.get(x.id);
      if (prev) {
        grads.set(x.id, tf.add(prev, dx));
        prev.dispose();
      } else grads.set(x.id, dx);
    }
  }
}
