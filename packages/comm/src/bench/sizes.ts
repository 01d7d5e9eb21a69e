// Message sizes for the collectives benchmark: "1K", "64M", "4KiB", "1048576" parse to bytes
// (binary multiples, as nccl-tests' -b/-e), and the sweep goes min..max by a constant factor.

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

export class SizeError extends Error {
  override name = 'SizeError';
}

export function parseBytes(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:i?b)?\s*$/i.exec(text);
  if (!m)
    throw new SizeError(`size '${text}' is not understood, expected a number of bytes like 4096, 1K, 64M or 1GiB`);
  const bytes = Math.round(Number(m[1]) * UNITS[m[2]!.toUpperCase()]!);
  if (bytes < 4) throw new SizeError(`size '${text}' is ${bytes} bytes, expected at least 4 (one float32)`);
  return bytes;
}

export function sweep(minBytes: number, maxBytes: number, factor: number): number[] {
  if (maxBytes < minBytes) throw new SizeError(`max bytes ${maxBytes} is below min bytes ${minBytes}`);
  if (!(factor >= 2) || !Number.isInteger(factor))
    throw new SizeError(`step factor ${factor} is invalid, expected an integer >= 2`);
  const out: number[] = [];
  for (let b = minBytes; b <= maxBytes; b *= factor) out.push(b);
  return out;
}

export function formatBytes(bytes: number): string {
  for (const [unit, size] of [
    ['G', 1024 ** 3],
    ['M', 1024 ** 2],
    ['K', 1024],
  ] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}
