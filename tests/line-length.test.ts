// Lines stay under 120 characters (DESIGN.md, "Conventions"). Prettier wraps code at 120 but
// cannot break a long string, template or comment, so this test lists every line it left over.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const MAX = 120;
const PATTERNS = ['packages/*/src/*', 'packages/*/test/*', 'tests/*', 'benchmarks/*'];

/** The tracked TypeScript and module files under PATTERNS (git's globs cross directories). */
function trackedSources(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--', ...PATTERNS], { cwd: root, encoding: 'utf8' });
  return out.split('\0').filter((f) => /\.(ts|mts|mjs)$/.test(f) && !/(^|\/)(node_modules|dist)\//.test(f));
}

describe('line length', () => {
  it(`no line over ${MAX} characters in the sources, tests and benchmarks`, () => {
    const files = trackedSources();
    expect(files.length).toBeGreaterThan(100);
    const long: string[] = [];
    for (const file of files) {
      const lines = readFileSync(join(root, file), 'utf8').split('\n');
      lines.forEach((line, i) => {
        const chars = [...line].length;
        if (chars > MAX) long.push(`${file}:${i + 1} (${chars} characters)`);
      });
    }
    expect(long, `lines over ${MAX} characters:\n${long.join('\n')}`).toEqual([]);
  });
});
