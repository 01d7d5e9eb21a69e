import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CharTokenizer, CorpusError, loadCorpus, Rng, TextDataset } from '../src/index.ts';

describe('Rng', () => {
  it('is reproducible by seed and differs across seeds', () => {
    const a = new Rng(42),
      b = new Rng(42),
      c = new Rng(43);
    const xa = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(xa);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(xa);
  });

  it('draws standard normals', () => {
    const r = new Rng(7);
    const xs = Array.from({ length: 20000 }, () => r.normal());
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
  });
});

describe('CharTokenizer', () => {
  it('round-trips text and survives JSON', () => {
    const text = 'Call me Ishmael. Some years ago—never mind how long';
    const tok = CharTokenizer.fromText(text);
    expect(tok.decode(tok.encode(text))).toBe(text);
    const again = CharTokenizer.fromJSON(JSON.parse(JSON.stringify(tok)));
    expect(Array.from(again.encode(text))).toEqual(Array.from(tok.encode(text)));
  });

  it('orders the vocabulary by code point, independent of text order', () => {
    expect(CharTokenizer.fromText('cab').chars).toEqual(['a', 'b', 'c']);
    expect(CharTokenizer.fromText('bca').chars).toEqual(['a', 'b', 'c']);
  });

  it('names an unknown character', () => {
    expect(() => CharTokenizer.fromText('abc').encode('abz')).toThrow(/"z" at position 2/);
  });
});

describe('loadCorpus', () => {
  it('loads Moby Dick from the npm package by default', () => {
    const text = loadCorpus();
    expect(text.length).toBeGreaterThan(1_000_000);
    expect(text).toContain('Call me Ishmael.');
    const v = CharTokenizer.fromText(text).vocabSize;
    expect(v).toBeGreaterThan(60);
    expect(v).toBeLessThan(120);
  });

  it('reads a user file and names a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zeroring-gpt-'));
    const file = join(dir, 'corpus.txt');
    writeFileSync(file, 'hello world\n');
    expect(loadCorpus(file)).toBe('hello world\n');
    expect(() => loadCorpus(join(dir, 'missing.txt'))).toThrow(/missing\.txt.*ENOENT/);
  });

  it('rejects a binary file: invalid UTF-8, or valid UTF-8 that is mostly control characters', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zeroring-gpt-'));
    const elf = join(dir, 'program');
    writeFileSync(elf, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0xff, 0xfe, 0x80, 0x41]));
    expect(() => loadCorpus(elf)).toThrow(CorpusError);
    expect(() => loadCorpus(elf)).toThrow(/program.*not valid UTF-8/);
    const zeros = join(dir, 'zeros');
    writeFileSync(zeros, Buffer.concat([Buffer.from('header text\n'), Buffer.alloc(200)]));
    expect(() => loadCorpus(zeros)).toThrow(/zeros.*looks binary: 200 of its 212 characters/);
    // Text keeps its tabs, form feeds and CRLF line ends, and a stray control character or two.
    const text = join(dir, 'text.txt');
    const body = 'Call me Ishmael.\tSome years ago\r\n\f'.repeat(20) + '\u0007';
    writeFileSync(text, body);
    expect(loadCorpus(text)).toBe(body);
  });
});

describe('TextDataset', () => {
  const tokens = Int32Array.from({ length: 10_000 }, (_, i) => i % 97);

  it('splits by position, deterministically by seed, about 90/10', () => {
    const a = new TextDataset(tokens, { seed: 1 });
    const b = new TextDataset(tokens, { seed: 1 });
    const c = new TextDataset(tokens, { seed: 2 });
    expect(a.segments).toEqual(b.segments);
    expect(a.segments).not.toEqual(c.segments);
    expect(a.size('train') + a.size('val')).toBe(tokens.length);
    expect(a.size('val') / tokens.length).toBeCloseTo(0.1, 2);
  });

  it('draws windows inside their split with targets shifted by one', () => {
    const ds = new TextDataset(tokens, { seed: 3 });
    const valSet = new Set<number>();
    for (const s of ds.segments.val) for (let i = s.start; i < s.end; i++) valSet.add(i);
    const rng = new Rng(0);
    for (const split of ['train', 'val'] as const) {
      const batch = ds.batch(rng, 16, 32, split);
      expect(batch.input.length).toBe(16 * 32);
      for (let b = 0; b < 16; b++) {
        const row = batch.input.subarray(b * 32, b * 32 + 32);
        const tgt = batch.targets.subarray(b * 32, b * 32 + 32);
        // tokens are i % 97, so each window's start position can be recovered up to a period;
        // check the shift directly instead.
        for (let t = 0; t < 31; t++) expect(tgt[t]).toBe(row[t + 1]);
        expect(tgt[31]).toBe((row[31]! + 1) % 97);
      }
    }
    for (const s of ds.windowStarts('val', 32)) {
      expect(valSet.has(s) && valSet.has(s + 32)).toBe(true);
    }
  });

  it('is reproducible from the rng seed', () => {
    const ds = new TextDataset(tokens);
    const a = ds.batch(new Rng(5), 4, 16);
    const b = ds.batch(new Rng(5), 4, 16);
    expect(Array.from(a.input)).toEqual(Array.from(b.input));
  });

  it('lists disjoint windows with stride = blockSize and assembles chosen ones', () => {
    const ds = new TextDataset(tokens, { seed: 4 });
    const starts = ds.windowStarts('train', 50, 50);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(50);
    const batch = ds.batchAt([starts[3]!, starts[0]!], 50);
    expect(Array.from(batch.input.subarray(0, 50))).toEqual(Array.from(tokens.subarray(starts[3]!, starts[3]! + 50)));
    expect(Array.from(batch.targets.subarray(50, 100))).toEqual(
      Array.from(tokens.subarray(starts[0]! + 1, starts[0]! + 51)),
    );
  });

  it('rejects a block size no segment can hold', () => {
    const ds = new TextDataset(Int32Array.from({ length: 200 }, (_, i) => i % 5));
    expect(() => ds.batch(new Rng(0), 1, 150, 'val')).toThrow(/val split has no segment of 151 tokens/);
  });
});
