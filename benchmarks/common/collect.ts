// A Writable that keeps everything written to it as text: the stdout/stderr sink the benchmarks
// hand to launch() and then search for their workers' RESULT / SOAK lines.
import { Writable } from 'node:stream';

export class Collect extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}
