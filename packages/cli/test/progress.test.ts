import { describe, expect, it } from 'vitest';
import { PassThrough } from 'node:stream';
import { createProgress } from '../src/progress.ts';

function collect(tty: boolean) {
  const stream = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
  if (tty) {
    stream.isTTY = true;
    stream.columns = 120;
  }
  let text = '';
  stream.on('data', (c: Buffer) => (text += c.toString()));
  return { stream, text: () => text };
}

describe('progress', () => {
  it('prints plain lines at most once per interval, plus the final value, when not a TTY', () => {
    const out = collect(false);
    let t = 0;
    const p = createProgress({ label: 'train', stream: out.stream, intervalMs: 1000, now: () => t });
    p.start(10, { loss: '-' });
    for (let i = 1; i <= 10; i++) {
      t += 300; // 10 updates over 3 s: first, ~every 1 s, and the last
      p.update(i, { loss: 5 - i * 0.25 });
    }
    p.stop();
    const lines = out.text().trim().split('\n');
    expect(lines[0]).toMatch(/^train 1\/10 \(10%\) [\d.]+\/s loss=4\.75$/);
    expect(lines.at(-1)).toMatch(/^train 10\/10 \(100%\) [\d.]+\/s loss=2\.5$/);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.length).toBeLessThanOrEqual(5);
    expect(out.text()).not.toContain('\x1b['); // no escape codes in logs
  });

  it('stop() prints the last value when the interval swallowed it', () => {
    const out = collect(false);
    let t = 0;
    const p = createProgress({ label: 'bench', stream: out.stream, intervalMs: 10_000, now: () => t });
    p.start(100);
    p.update(1);
    t += 5;
    p.update(42);
    p.stop();
    expect(
      out
        .text()
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[1]),
    ).toEqual(['1/100', '42/100']);
  });

  it('draws a cli-progress bar with fields on a TTY', () => {
    const out = collect(true);
    const p = createProgress({ label: 'train', stream: out.stream });
    p.start(4, { loss: 9 });
    p.update(4, { loss: 1.5 });
    p.stop();
    expect(out.text()).toContain('train [');
    expect(out.text()).toContain('100% | 4/4');
    expect(out.text()).toContain('loss=1.5');
  });

  it('rejects a bad total, naming it', () => {
    const p = createProgress({ label: 'x', stream: collect(false).stream });
    expect(() => p.start(Number.NaN)).toThrow(/total NaN is invalid/);
  });
});
