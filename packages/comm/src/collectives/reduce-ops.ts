// Elementwise reductions on float32 (plain loops: V8 compiles them to tight code, and a
// chunk is reduced while the kernel already receives the next one). 'avg' reduces as 'sum'
// and is scaled once by 1/worldSize where the fully reduced chunk first exists, so every rank
// gets bit-identical results.
import type { ReduceOp } from './types.ts';

/** acc[i] = acc[i] (op) x[i] */
export function reduceInto(op: ReduceOp, acc: Float32Array, x: Float32Array): void {
  const n = acc.length;
  switch (op) {
    case 'sum':
    case 'avg':
      for (let i = 0; i < n; i++) acc[i]! += x[i]!;
      return;
    case 'max':
      for (let i = 0; i < n; i++) if (x[i]! > acc[i]! || x[i] !== x[i]) acc[i] = x[i]!;
      return;
    case 'min':
      for (let i = 0; i < n; i++) if (x[i]! < acc[i]! || x[i] !== x[i]) acc[i] = x[i]!;
      return;
  }
}

export function scale(a: Float32Array, s: number): void {
  for (let i = 0; i < a.length; i++) a[i]! *= s;
}
