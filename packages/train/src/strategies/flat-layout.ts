// Where each parameter sits in the flat group that the device AdamW updates in one dispatch
// (optim-flat.ts): every parameter that decays first, then every one that does not (optim/adamw.ts's
// `decays` rule), each in the model's order, so that a single boundary index tells the kernel
// which elements decay.
import { paramCount, type ParamSpec } from '../model.ts';
import { decays } from '../optim/adamw.ts';

export interface FlatSlot {
  readonly name: string;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly size: number;
}

export class FlatLayout {
  readonly slots: readonly FlatSlot[];
  readonly slotOf: ReadonlyMap<string, FlatSlot>;
  /** Elements in the group. */
  readonly size: number;
  /** Elements [0, decayEnd) decay. */
  readonly decayEnd: number;

  constructor(specs: readonly ParamSpec[]) {
    const ordered = [...specs.filter((s) => decays(s.shape)), ...specs.filter((s) => !decays(s.shape))];
    const slots: FlatSlot[] = [];
    let offset = 0;
    let decayEnd = 0;
    for (const spec of ordered) {
      const size = paramCount(spec);
      slots.push({ name: spec.name, shape: spec.shape, offset, size });
      offset += size;
      if (decays(spec.shape)) decayEnd = offset;
    }
    this.slots = slots;
    this.slotOf = new Map(slots.map((s) => [s.name, s]));
    this.size = offset;
    this.decayEnd = decayEnd;
  }
}
