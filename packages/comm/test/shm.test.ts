import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { getLogger } from '@zeroring/core';
import { createSegment, openSegment, slotsFor } from '../src/transport/shm.ts';

const log = getLogger({ component: 'test' });
const dir = mkdtempSync(join(tmpdir(), 'zr-shm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(process.platform !== 'linux')('shared-memory segments', () => {
  it('a receiver that opens the offer reads what the sender wrote into each slot', () => {
    const made = createSegment(3, 4096, log)!;
    expect(made).not.toBeNull();
    const seg = openSegment(JSON.stringify(made.offer), log)!;
    expect(seg).not.toBeNull();
    for (let s = 0; s < 3; s++) made.segment.write(s, new Uint8Array(4096).fill(s + 1));
    for (let s = 2; s >= 0; s--) {
      const into = new Uint8Array(4096);
      expect(seg.read(s, into)).toBe(true);
      expect(into.every((b) => b === s + 1)).toBe(true);
    }
    made.segment.close();
    seg.close();
  });

  it('leaves no file behind in /dev/shm, even before the receiver opened it', () => {
    const made = createSegment(2, 4096, log)!;
    expect(execFileSync('ls', ['/dev/shm']).toString()).not.toContain(`zeroring-${process.pid}-`);
    made.segment.close();
  });

  it('refuses a segment whose nonce, size or kind is not the one offered, and never blocks on a FIFO', () => {
    const made = createSegment(2, 4096, log)!;
    const o = made.offer;
    expect(openSegment(JSON.stringify({ ...o, nonce: '00'.repeat(16) }), log)).toBeNull();
    expect(openSegment(JSON.stringify({ ...o, slots: 1 }), log)).toBeNull();
    expect(openSegment(JSON.stringify({ ...o, path: '/nonexistent/zr' }), log)).toBeNull();
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(openSegment(JSON.stringify({ ...o, path: fifo }), log)).toBeNull();
    expect(openSegment('not json', log)).toBeNull();
    expect(openSegment('', log)).toBeNull();
    expect(openSegment(JSON.stringify({ ...o, slots: 1000 }), log)).toBeNull();
    made.segment.close();
  });

  it('slots: as many chunks as fit in 32 MiB, between 2 and 8', () => {
    expect(slotsFor(1 << 20)).toBe(8);
    expect(slotsFor(8 << 20)).toBe(4);
    expect(slotsFor(16 << 20)).toBe(2);
  });
});
