/**
 * The CLI's progress bar on stderr, for runs that stream rows for over a second: what is done,
 * how long it took and how long the rest will take.
 */
/** Options of a `ProgressBar`. */
export interface ProgressOptions {
  /** How many units the work has (samples). */
  total: number;
  /** Where the text goes; the CLI writes stderr synchronously (the work blocks the event loop). */
  write: (text: string) => void;
  /** When the work started, on the clock `update` is given (ms). */
  start: number;
  /** The terminal's width in characters (default, and when 0 or unknown: 80). */
  columns?: number;
  /** What the units are called (default "samples"). */
  unit?: string;
}

/**
 * A one-line progress bar, `1024/2048 samples [#####-----]  50%  0:03 elapsed, ETA 0:03`,
 * redrawn in place with `\r`. Quiet for the first second (a short run shows nothing at all)
 * and redrawn at most every 100 ms whatever the rate of updates; the clock is given to each
 * call, so tests drive it with a fake one. Whether to show one at all (stderr a terminal) is
 * the caller's decision.
 *
 * @example
 * ```ts
 * import { ProgressBar } from "./src/io/progress.ts";
 * const written: string[] = [];
 * const bar = new ProgressBar({ total: 2048, write: (text) => void written.push(text), start: 0 });
 * bar.update(256, 500); // nothing yet: under a second
 * bar.update(512, 1000); // "\r 512/2048 samples [#######-----…]   25%  0:01 elapsed, ETA 0:03"
 * bar.finish(4000); // the complete bar, then "\n"
 * ```
 */
export class ProgressBar {
  /** No bar before the work has run this long (ms). */
  static readonly DELAY_MS = 1000;
  /** The least time between two redraws (ms). */
  static readonly INTERVAL_MS = 100;

  private readonly total: number;
  private readonly write: (text: string) => void;
  private readonly start: number;
  private readonly columns: number;
  private readonly unit: string;
  private lastDrawn: number | undefined;
  private ended = false;

  constructor(options: ProgressOptions) {
    this.total = options.total;
    this.write = options.write;
    this.start = options.start;
    this.columns = options.columns !== undefined && options.columns > 0 ? options.columns : 80; // 0: a terminal that does not say
    this.unit = options.unit ?? "samples";
  }

  /** `done` units are finished at time `now`: redraws, if the bar is due. */
  update(done: number, now: number): void {
    if (this.ended || now - this.start < ProgressBar.DELAY_MS) return;
    if (this.lastDrawn !== undefined && now - this.lastDrawn < ProgressBar.INTERVAL_MS) return;
    this.lastDrawn = now;
    this.write(`\r${this.line(done, now)}\x1b[K`);
  }

  /** The work is done: the bar, if shown, is drawn complete and its line ended. */
  finish(now: number): void {
    if (this.ended) return;
    this.ended = true;
    if (this.lastDrawn !== undefined) this.write(`\r${this.line(this.total, now)}\x1b[K\n`);
  }

  /** The work failed: the bar's line, if shown, is ended as it stands, so the error message gets a line of its own. */
  interrupt(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.lastDrawn !== undefined) this.write("\n");
  }

  private line(done: number, now: number): string {
    const elapsed = now - this.start;
    const fraction = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const eta = done > 0 ? formatDuration((elapsed / done) * (this.total - done)) : "--:--";
    const count = `${String(done).padStart(String(this.total).length)}/${this.total} ${this.unit}`;
    const numbers = `${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatDuration(elapsed)} elapsed, ETA ${eta}`;
    // The bar takes what the terminal has left (one column spare, so the line never wraps).
    const width = Math.max(0, Math.min(40, this.columns - 1 - count.length - numbers.length - 5));
    if (width < 5) return `${count}  ${numbers}`;
    const filled = Math.floor(fraction * width);
    return `${count} [${"#".repeat(filled)}${"-".repeat(width - filled)}]  ${numbers}`;
  }
}

/** m:ss, or h:mm:ss from an hour on. */
function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}
