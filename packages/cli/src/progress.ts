// Progress for long work (training steps, benchmark sizes): a live cli-progress bar on a TTY,
// plain periodic lines otherwise (CI logs, pipes, files), where a redrawn bar would be noise.
//
//   const p = createProgress({ label: 'train' });
//   p.start(steps, { loss: '-' });
//   p.update(step, { loss: loss.toFixed(3) });
//   p.stop();
//
// Output goes to stderr by default so stdout stays clean for tables and JSON.
import cliProgress from 'cli-progress';

export type ProgressFields = Record<string, string | number>;

export interface Progress {
  start(total: number, fields?: ProgressFields): void;
  /** Sets the absolute value (not an increment), e.g. the number of finished steps. */
  update(value: number, fields?: ProgressFields): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Force the bar (true) or plain lines (false); default: bar when the stream is a TTY. */
  tty?: boolean;
  /** Plain mode: at most one line per this many ms (the first and the final value always print). */
  intervalMs?: number;
  /** Clock for plain mode's rate limit (injectable so tests need no sleeps). */
  now?: () => number;
}

function formatFields(fields: ProgressFields): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toPrecision(4)) : v}`)
    .join(' ');
}

function checkTotal(total: number): void {
  if (!Number.isFinite(total) || total < 0) {
    throw new RangeError(`progress total ${total} is invalid: expected a finite number >= 0`);
  }
}

/** A redrawn bar (cli-progress) with the fields appended as key=value. */
function barProgress(opts: ProgressOptions): Progress {
  const bar = new cliProgress.SingleBar(
    {
      stream: opts.stream as NodeJS.WritableStream,
      format:
        `${opts.label} [{bar}] {percentage}% | {value}/{total} | ` +
        '{duration_formatted} elapsed, ETA {eta_formatted} | {info}',
      hideCursor: true,
      etaBuffer: 20,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let fields: ProgressFields = {};
  return {
    start(total, f = {}) {
      checkTotal(total);
      fields = { ...f };
      bar.start(total, 0, { info: formatFields(fields) });
    },
    update(value, f) {
      if (f) fields = { ...fields, ...f };
      bar.update(value, { info: formatFields(fields) });
    },
    stop() {
      bar.stop();
    },
  };
}

/** One line per interval: `label 40/200 (20%) 12.3/s loss=2.31`. */
function lineProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 10_000;
  let total = 0;
  let value = 0;
  let fields: ProgressFields = {};
  let startedAt = 0;
  let lastLineAt = -Infinity;
  let lastPrinted = -1;
  let running = false;

  const print = () => {
    const pct = total > 0 ? Math.floor((100 * value) / total) : 100;
    const secs = (now() - startedAt) / 1000;
    const rate = secs > 0 ? ` ${(value / secs).toPrecision(3)}/s` : '';
    const extra = formatFields(fields);
    stream.write(`${opts.label} ${value}/${total} (${pct}%)${rate}${extra ? ' ' + extra : ''}\n`);
    lastLineAt = now();
    lastPrinted = value;
  };

  return {
    start(t, f = {}) {
      checkTotal(t);
      total = t;
      value = 0;
      fields = { ...f };
      startedAt = now();
      lastLineAt = -Infinity;
      lastPrinted = -1;
      running = true;
    },
    update(v, f) {
      if (!running) return;
      value = v;
      if (f) fields = { ...fields, ...f };
      if (now() - lastLineAt >= interval || v >= total) print();
    },
    stop() {
      if (!running) return;
      running = false;
      if (lastPrinted !== value) print();
    },
  };
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = opts.tty ?? (stream as { isTTY?: boolean }).isTTY === true;
  return tty ? barProgress({ ...opts, stream }) : lineProgress({ ...opts, stream });
}
