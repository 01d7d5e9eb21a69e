// Run metrics that scripts compare across runs and strategies (DESIGN.md, "Contracts").

/**
 * summary.json's paramChecksum: the float64 sum of squares of every parameter value, summed
 * parameter by parameter in name order so the figure does not depend on how a strategy
 * enumerates them. Identical parameters give an identical checksum.
 */
export function paramChecksum(params: Map<string, Float32Array>): number {
  let total = 0;
  for (const name of [...params.keys()].sort()) {
    const a = params.get(name)!;
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * a[i];
    total += s;
  }
  return total;
}

/** Median of a list (0 for an empty one). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Human-readable byte count (KiB/MiB/GiB) for progress lines. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)} ${units[u]}`;
}
