// Checks a pipeline schedule: the lists themselves (every micro-batch's F and B exactly once per
// stage, B after F), then by executing every stage's program (stageProgram) against the others
// with blocking communication: a receive waits for its send, and (by default) a send waits for
// its receive, as a rendezvous. What the execution finds: a deadlock, or a receive matched with
// the wrong micro-batch (channels are FIFO, untagged). The same execution gives simulateSchedule
// its timeline, so what is timed is what was checked.
import { checkShape } from './gpipe.ts';
import {
  ScheduleError,
  instrLabel,
  stageProgram,
  type PipeCommOp,
  type PipeFuse,
  type PipeSchedule,
  type PipeStep,
} from './schedule.ts';

/** rendezvous: a send blocks until its receive is posted (the strict case); buffered: sends never block. */
export type PipeCommMode = 'rendezvous' | 'buffered';

export interface TimedInstr {
  readonly op: 'F' | 'B';
  readonly micro: number;
  readonly chunk?: number;
  readonly start: number;
  readonly end: number;
}

export interface ExecuteOptions {
  /** Forward time of stage s (a number: every stage). */
  fwdTime: number | readonly number[];
  bwdTime: number | readonly number[];
  comm?: PipeCommMode;
  /** How sends and receives are batched (default 'next'; see PipeFuse). */
  fuse?: PipeFuse;
}

const timeOf = (t: number | readonly number[], s: number): number => (typeof t === 'number' ? t : t[s]!);

/**
 * Static checks of the lists: shape, one F and one B per micro-batch (and chunk, for interleaved
 * schedules with `chunks` > 1) per stage, B after F.
 */
export function checkLists(schedule: PipeSchedule, stages: number, micros: number, chunks = 1): void {
  checkShape(stages, micros);
  if (!Number.isSafeInteger(chunks) || chunks < 1)
    throw new ScheduleError('shape', 0, -1, `chunks = ${chunks}, expected an integer >= 1`);
  if (schedule.length !== stages)
    throw new ScheduleError('shape', 0, -1, `${schedule.length} stage lists, expected ${stages}`);
  const chunkOk = (c: number | undefined): boolean =>
    chunks === 1 ? c === undefined || c === 0 : Number.isInteger(c) && c! >= 0 && c! < chunks;
  for (const [s, list] of schedule.entries()) {
    const seen = { F: new Set<string>(), B: new Set<string>() };
    for (const [i, instr] of list.entries()) {
      const at = `stage ${s} instruction ${i}`;
      const name = instrLabel(instr);
      if ((instr.op !== 'F' && instr.op !== 'B') || !Number.isInteger(instr.micro) || instr.micro < 0) {
        const got = JSON.stringify(instr);
        throw new ScheduleError('bad', s, i, `${at} is ${got}, expected { op: 'F' | 'B', micro: 0..${micros - 1} }`);
      }
      if (instr.micro >= micros)
        throw new ScheduleError('bad', s, i, `${at} (${name}): micro ${instr.micro}, expected < ${micros}`);
      if (!chunkOk(instr.chunk)) {
        const want = chunks === 1 ? 'none (no interleaving)' : `0..${chunks - 1}`;
        throw new ScheduleError('bad', s, i, `${at} (${name}): chunk ${instr.chunk}, expected ${want}`);
      }
      if (instr.withNext !== undefined && instr.withNext !== false) {
        const next = list[i + 1];
        if (instr.withNext !== true || instr.op !== 'F' || next?.op !== 'B')
          throw new ScheduleError('bad', s, i, `${at} (${name}): withNext, expected only on an F followed by a B`);
      }
      const key = `${instr.chunk ?? 0}:${instr.micro}`;
      if (seen[instr.op].has(key))
        throw new ScheduleError('duplicate', s, i, `${at} (${name}) runs a second time on stage ${s}`);
      if (instr.op === 'B' && !seen.F.has(key)) {
        const f = instrLabel({ ...instr, op: 'F' });
        throw new ScheduleError('order', s, i, `${at} (${name}) comes before ${f} on stage ${s}`);
      }
      seen[instr.op].add(key);
    }
    for (const op of ['F', 'B'] as const)
      for (let c = 0; c < chunks; c++)
        for (let m = 0; m < micros; m++)
          if (!seen[op].has(`${c}:${m}`)) {
            const name = instrLabel({ op, micro: m, chunk: chunks === 1 ? undefined : c });
            throw new ScheduleError('missing', s, -1, `stage ${s} never runs ${name}`);
          }
  }
}

interface StageState {
  readonly steps: PipeStep[];
  pc: number;
  clock: number;
  /** Per op of the current comm step: when it was matched (undefined: not yet). */
  matched: (number | undefined)[];
  posted: boolean;
  lane: TimedInstr[];
}

/** What crosses a channel: which tensor of which micro-batch between which model stages. */
type Msg = Pick<PipeCommOp, 'tensor' | 'micro' | 'edge' | 'instr'>;
const sameMsg = (a: Msg, b: Msg): boolean => a.tensor === b.tensor && a.micro === b.micro && a.edge === b.edge;
const describeMsg = (o: Msg): string => `${o.tensor} of micro ${o.micro}`;
const describeOp = (o: PipeCommOp): string =>
  `${o.dir} ${describeMsg(o)} ${o.dir === 'send' ? 'to' : 'from'} stage ${o.peer}`;

/**
 * Runs every stage's program against the others in simulated time (compute takes fwdTime or
 * bwdTime, communication takes none but may wait). Throws ScheduleError on a deadlock or a
 * mismatched receive. Call checkLists first: this assumes well-formed lists.
 */
export function executeSchedule(schedule: PipeSchedule, opts: ExecuteOptions): TimedInstr[][] {
  const mode = opts.comm ?? 'rendezvous';
  const st: StageState[] = schedule.map((_, s) => ({
    steps: stageProgram(schedule, s, opts.fuse ?? 'next'),
    pc: 0,
    clock: 0,
    matched: [],
    posted: false,
    lane: [],
  }));
  // buffered mode: messages sent and not yet received, per channel "from>to", FIFO. One channel per
  // ordered pair of stages whatever the tensor, as point to point pairs the k-th send from a rank
  // with the k-th receive from it.
  const inFlight = new Map<string, (Msg & { at: number })[]>();
  const current = (s: number): Extract<PipeStep, { kind: 'comm' }> | undefined => {
    const step = st[s]?.steps[st[s]!.pc];
    return step?.kind === 'comm' && st[s]!.posted ? step : undefined;
  };
  const mismatch = (s: number, o: PipeCommOp, got: Msg): never => {
    const instr = schedule[s]![o.instr]!;
    throw new ScheduleError(
      'mismatch',
      s,
      o.instr,
      `stage ${s} instruction ${o.instr} (${instrLabel(instr)}) would ${describeOp(o)}, but stage ${o.peer}'s ` +
        `matching ${o.dir === 'send' ? 'receive' : 'send'} is for ${describeMsg(got)} ` +
        `(its instruction ${got.instr}): the two stages exchange micro-batches in different orders`,
    );
  };
  // Tries to match op k of stage s's posted comm step; returns whether it is matched now.
  const tryMatch = (s: number, k: number): boolean => {
    const me = st[s]!;
    const o = (me.steps[me.pc] as Extract<PipeStep, { kind: 'comm' }>).ops[k]!;
    if (me.matched[k] !== undefined) return true;
    if (mode === 'buffered') {
      if (o.dir === 'send') {
        const key = `${s}>${o.peer}`;
        const msg = { ...o, at: me.clock };
        inFlight.set(key, [...(inFlight.get(key) ?? []), msg]);
        me.matched[k] = me.clock;
        return true;
      }
      const msg = inFlight.get(`${o.peer}>${s}`)?.shift();
      if (!msg) return false;
      if (!sameMsg(msg, o)) mismatch(s, o, msg);
      me.matched[k] = Math.max(me.clock, msg.at);
      return true;
    }
    const peerStep = current(o.peer);
    if (!peerStep) return false;
    // An op the peer's step already matched (with this stage's previous step) is not a candidate.
    const pk = peerStep.ops.findIndex(
      (p, i) => p.peer === s && p.dir !== o.dir && st[o.peer]!.matched[i] === undefined,
    );
    if (pk < 0) return false;
    const p = peerStep.ops[pk]!;
    if (!sameMsg(p, o)) mismatch(s, o, p);
    const at = Math.max(me.clock, st[o.peer]!.clock);
    me.matched[k] = at;
    st[o.peer]!.matched[pk] = at;
    return true;
  };
  // Advances stage s as far as it can; returns whether it moved.
  const advance = (s: number): boolean => {
    const me = st[s]!;
    let moved = false;
    for (;;) {
      const step = me.steps[me.pc];
      if (!step) return moved;
      if (step.kind === 'compute') {
        const dur = step.op === 'F' ? timeOf(opts.fwdTime, s) : timeOf(opts.bwdTime, s);
        const { op, micro, chunk } = step;
        me.lane.push({ op, micro, ...(chunk === undefined ? {} : { chunk }), start: me.clock, end: me.clock + dur });
        me.clock += dur;
        me.pc++;
        moved = true;
        continue;
      }
      if (!me.posted) {
        me.posted = true;
        me.matched = step.ops.map(() => undefined);
        moved = true;
      }
      let all = true;
      for (let k = 0; k < step.ops.length; k++) all = tryMatch(s, k) && all;
      if (!all) return moved;
      me.clock = Math.max(me.clock, ...me.matched.map((t) => t!));
      me.pc++;
      me.posted = false;
      moved = true;
    }
  };
  let progress = true;
  while (progress) {
    progress = false;
    for (let s = 0; s < st.length; s++) progress = advance(s) || progress;
  }
  const blocked = st.findIndex((x) => x.pc < x.steps.length);
  if (blocked >= 0) {
    const waits = st.flatMap((x, s) => {
      const step = x.steps[x.pc];
      if (step?.kind !== 'comm') return [];
      const o = step.ops.find((_, k) => x.matched[k] === undefined)!;
      return [`stage ${s} at instruction ${o.instr} (${instrLabel(schedule[s]![o.instr]!)}) waits to ${describeOp(o)}`];
    });
    const first = st[blocked]!;
    const step = first.steps[first.pc] as Extract<PipeStep, { kind: 'comm' }>;
    const index = step.ops.find((_, k) => first.matched[k] === undefined)!.instr;
    throw new ScheduleError('deadlock', blocked, index, `deadlock (${mode} sends): ${waits.join('; ')}`);
  }
  return st.map((x) => x.lane);
}

/**
 * Throws ScheduleError unless `schedule` runs every micro-batch's F and B exactly once on each of
 * `stages` stages, B after F on a stage, F of m on stage s after F of m on s - 1 and B of m on s
 * after B of m on s + 1, without deadlock under blocking send/recv in list order. `chunks` > 1:
 * an interleaved schedule, the same per model stage (chunk c of stage s is model stage c·P + s).
 */
export function checkSchedule(
  schedule: PipeSchedule,
  stages: number,
  micros: number,
  how: { comm?: PipeCommMode; fuse?: PipeFuse; chunks?: number } = {},
): void {
  const chunks = how.chunks ?? 1;
  checkLists(schedule, stages, micros, chunks);
  const lanes = executeSchedule(schedule, { fwdTime: 1, bwdTime: 2, ...how });
  // The execution enforces the data flow; this proves it did (and would catch a broken derivation).
  const at = (g: number, op: 'F' | 'B', m: number): TimedInstr =>
    lanes[g % stages]!.find((t) => t.op === op && t.micro === m && (t.chunk ?? 0) === Math.floor(g / stages))!;
  const last = stages * chunks - 1;
  for (let g = 0; g <= last; g++)
    for (let m = 0; m < micros; m++) {
      const s = g % stages;
      if (g > 0 && at(g, 'F', m).start < at(g - 1, 'F', m).end)
        throw new ScheduleError('order', s, -1, `F${m} of model stage ${g} starts before model stage ${g - 1}'s ends`);
      if (g < last && at(g, 'B', m).start < at(g + 1, 'B', m).end)
        throw new ScheduleError('order', s, -1, `B${m} of model stage ${g} starts before model stage ${g + 1}'s ends`);
    }
}
