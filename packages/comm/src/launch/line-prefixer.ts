// Copies a worker's output to ours one whole line at a time, each line prefixed with the rank,
// so that lines of concurrent workers interleave but never tear. A last line without a newline
// is flushed when the stream ends.
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';

export function pipeLines(source: Readable, target: NodeJS.WritableStream, prefix: string): Promise<void> {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  const emit = (text: string): void => {
    if (text.length === 0) return;
    // One write per chunk keeps our own output ordered without a write per line.
    let out = '';
    let start = 0;
    for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', start)) {
      out += prefix + partial + text.slice(start, nl + 1);
      partial = '';
      start = nl + 1;
    }
    partial += text.slice(start);
    if (out) target.write(out);
  };
  return new Promise((resolve) => {
    source.on('data', (chunk: Buffer) => emit(decoder.write(chunk)));
    const finish = (): void => {
      emit(decoder.end());
      if (partial) target.write(prefix + partial + '\n');
      partial = '';
      resolve();
    };
    source.once('end', finish);
    source.once('error', finish);
  });
}
