// Learning-rate schedule of nanoGPT (train.py get_lr): linear warmup, cosine decay to minLr,
// then constant. A pure function of the step, so resumed runs get the same rate.

export interface LrSchedule {
  lr: number;
  minLr: number;
  warmupSteps: number;
  /** Step at which the cosine reaches minLr (nanoGPT's lr_decay_iters, usually the run length). */
  decaySteps: number;
}

export function learningRate(s: LrSchedule, step: number): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1);
  if (step > s.decaySteps) return s.minLr;
  const span = s.decaySteps - s.warmupSteps;
  const ratio = span > 0 ? (step - s.warmupSteps) / span : 1;
  const coeff = 0.5 * (1 + Math.cos(Math.PI * ratio));
  return s.minLr + coeff * (s.lr - s.minLr);
}
