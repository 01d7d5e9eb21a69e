// The public collectives as calls: each checks its arguments (a typed error that names the
// bad value and the expected one), then says what it is on the wire (kind, op, count, dtype,
// root: the tags every message carries and every rank checks), which algorithm runs it on the
// ring, and what it amounts to alone, with world size 1.
import { allGather } from '../collectives/allgather.ts';
import { AllReduce } from '../collectives/allreduce.ts';
import { GatherAllReduce } from '../collectives/allreduce-gather.ts';
import { HalfAllReduce } from '../collectives/allreduce-half.ts';
import { HalfGatherAllReduce } from '../collectives/allreduce-half-gather.ts';
import { codecOf, roundTo } from '../collectives/half.ts';
import { Barrier } from '../collectives/barrier.ts';
import { Broadcast } from '../collectives/broadcast.ts';
import { reduceScatter } from '../collectives/reducescatter.ts';
import {
  REDUCE_OPS,
  WIRE_DTYPES,
  type Collective,
  type Payload,
  type ReduceOp,
  type RingPort,
  type WireDtype,
} from '../collectives/types.ts';
import { ConfigError } from '../errors.ts';
import type { Hierarchy } from './hierarchy.ts';
import type { NewCall } from './op-queue.ts';

export interface ReduceOptions {
  op?: ReduceOp;
  /**
   * allReduce only: the element type on the wire. 'bfloat16' and 'float16' send half the bytes:
   * each hop rounds its partial result to 16 bits (reducing in float32), and the result is a
   * 16-bit value on every rank, bit-identical. Default 'float32'.
   */
  wire?: WireDtype;
}

export interface CallSpec {
  call: NewCall;
  /** Builds the algorithm once the call's turn comes. */
  make: (port: RingPort) => Collective<Payload>;
  /** What the call does with world size 1. */
  alone: () => void;
}

const nothing = (): void => undefined;

/**
 * In place: buf becomes the elementwise reduction of every rank's buf. With a hierarchy (the
 * world group over several nodes), sizes past the gather's go through the node rings.
 */
export function allReduceCall(
  buf: Float32Array,
  opts: ReduceOptions,
  smallBytes: number,
  hier: Hierarchy | null = null,
): CallSpec {
  const op = checkOp(opts.op);
  checkF32('allReduce', 'buf', buf);
  const wire = checkWire(opts.wire);
  // Latency-bound sizes take the gather algorithm (fewer hops), the rest the bandwidth-optimal ring.
  const small = smallBytes > 0 && buf.byteLength <= smallBytes;
  if (wire !== 'float32') {
    // The same choice of algorithm by the float32 size: the 16-bit call sends exactly half the bytes.
    // A 16-bit wire stays on this group's ring (the hierarchical all-reduce is float32's).
    return {
      call: { kind: 'allReduce', op, count: buf.length, dtype: wire },
      make: (p) => (small ? new HalfGatherAllReduce(p, buf, op, wire) : new HalfAllReduce(p, buf, op, wire)),
      alone: () => roundTo(codecOf(wire), buf),
    };
  }
  const make = (p: RingPort): Collective => {
    if (small) return new GatherAllReduce(p, buf, op);
    return hier ? hier.allReduce(p, buf, op) : new AllReduce(p, buf, op);
  };
  return { call: { kind: 'allReduce', op, count: buf.length, dtype: 'float32' }, make, alone: nothing };
}

export function reduceScatterCall(
  input: Float32Array,
  output: Float32Array,
  opts: ReduceOptions,
  worldSize: number,
): CallSpec {
  const op = checkOp(opts.op);
  if ((opts.wire ?? 'float32') !== 'float32') {
    throw new ConfigError(
      `reduceScatter: wire '${String(opts.wire)}' is not supported, expected float32 (a 16-bit wire is allReduce's)`,
    );
  }
  checkF32('reduceScatter', 'input', input);
  checkF32('reduceScatter', 'output', output);
  if (input.length !== worldSize * output.length) {
    throw new ConfigError(
      `reduceScatter: input.length=${input.length}, expected worldSize * output.length = ` +
        `${worldSize} * ${output.length} = ${worldSize * output.length}`,
    );
  }
  return {
    call: { kind: 'reduceScatter', op, count: input.length, dtype: 'float32' },
    make: (p) => reduceScatter(p, input, output, op),
    alone: () => output.set(input),
  };
}

export function allGatherCall(input: Float32Array, output: Float32Array, worldSize: number): CallSpec {
  checkF32('allGather', 'input', input);
  checkF32('allGather', 'output', output);
  if (output.length !== worldSize * input.length) {
    throw new ConfigError(
      `allGather: output.length=${output.length}, expected worldSize * input.length = ` +
        `${worldSize} * ${input.length} = ${worldSize * input.length}`,
    );
  }
  return {
    call: { kind: 'allGather', count: output.length, dtype: 'float32' },
    make: (p) => allGather(p, input, output),
    alone: () => output.set(input),
  };
}

export function broadcastCall(buf: Float32Array, root: number, worldSize: number): CallSpec {
  checkF32('broadcast', 'buf', buf);
  if (!Number.isInteger(root) || root < 0 || root >= worldSize) {
    throw new ConfigError(`broadcast: root=${root} is out of range, expected 0..${worldSize - 1}`);
  }
  return {
    call: { kind: 'broadcast', count: buf.length, dtype: 'float32', root },
    make: (p) => new Broadcast(p, buf, root),
    alone: nothing,
  };
}

export function barrierCall(): CallSpec {
  return { call: { kind: 'barrier', count: 0, dtype: 'float32' }, make: (p) => new Barrier(p), alone: nothing };
}

function checkOp(op: ReduceOp | undefined): ReduceOp {
  const o = op ?? 'sum';
  if (!REDUCE_OPS.includes(o)) {
    throw new ConfigError(`reduce op '${String(op)}' is not supported, expected one of ${REDUCE_OPS.join(', ')}`);
  }
  return o;
}

function checkWire(wire: WireDtype | undefined): WireDtype {
  const w = wire ?? 'float32';
  if (!WIRE_DTYPES.includes(w)) {
    throw new ConfigError(
      `allReduce: wire '${String(wire)}' is not supported, expected one of ${WIRE_DTYPES.join(', ')}`,
    );
  }
  return w;
}

export function checkF32(fn: string, name: string, a: unknown): void {
  if (a instanceof Float32Array) return;
  const got = a === null ? 'null' : typeof a === 'object' ? (a as object).constructor?.name : typeof a;
  throw new ConfigError(`${fn}: ${name} must be a Float32Array, got ${got}`);
}
