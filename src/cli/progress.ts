/**
 * The progress bar of long transfers: bytes done, rate and time left, drawn
 * on one line of a terminal's standard error, and nothing at all when
 * standard error is not a terminal (piped, redirected, in CI).
 *
 * @module
 */

import { formatBytes, formatClock } from "./format.ts";

/** Transfers smaller than this finish too fast for a bar to help. */
export const PROGRESS_MIN_BYTES = 8 * 1024 * 1024;

/** How often the line is redrawn at most. */
const REDRAW_MS = 100;
const BAR_WIDTH = 24;

/**
 * Where the bar is drawn: standard error by default.
 */
export interface ProgressSink {
  /** Whether the sink is a terminal that can redraw a line. */
  isTerminal(): boolean;
  /** Writes text as is. */
  write(text: string): void;
}

const stderrSink: ProgressSink = {
  isTerminal: () => Deno.stderr.isTerminal(),
  write: (text) => {
    const bytes = new TextEncoder().encode(text);
    for (let n = 0; n < bytes.length;) {
      n += Deno.stderr.writeSync(bytes.subarray(n));
    }
  },
};

/**
 * One progress bar for a transfer of `total` bytes. It draws only when its
 * sink is a terminal and the transfer is large; otherwise every method does
 * nothing, so callers never need to check.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { Progress } from "./progress.ts";
 *
 * const lines: string[] = [];
 * const sink = { isTerminal: () => true, write: (text: string) => void lines.push(text) };
 * const progress = new Progress("copying", 100, { sink, minBytes: 0 });
 * progress.add(100);
 * progress.done();
 * assert(lines.at(-1)!.endsWith("\n"));
 * ```
 */
export class Progress {
  /** Whether the bar is drawn at all. */
  readonly enabled: boolean;
  #label: string;
  #total: number;
  #done = 0;
  #skipped = 0;
  #started = performance.now();
  #drawn = -Infinity;
  #sink: ProgressSink;

  /**
   * Prepares a bar labelled `label` for `total` bytes, drawn on `sink`
   * (default standard error) when it is a terminal and `total` is at least
   * `minBytes` (default {@linkcode PROGRESS_MIN_BYTES}).
   */
  constructor(
    label: string,
    total: number,
    options: { sink?: ProgressSink; minBytes?: number } = {},
  ) {
    this.#sink = options.sink ?? stderrSink;
    this.#label = label;
    this.#total = total;
    this.enabled = total >= (options.minBytes ?? PROGRESS_MIN_BYTES) &&
      this.#sink.isTerminal();
    this.#draw(true);
  }

  /** Counts `bytes` already done before this run (a resumed upload): not in the rate. */
  skip(bytes: number): void {
    this.#skipped += bytes;
    this.#done += bytes;
    this.#draw(false);
  }

  /** Counts `bytes` more done. */
  add(bytes: number): void {
    this.#done += bytes;
    this.#draw(false);
  }

  /** Draws the final state and ends the line. */
  done(): void {
    this.#draw(true);
    if (this.enabled) this.#sink.write("\n");
  }

  /** A pass-through stream that counts what flows through it. */
  counter(): TransformStream<Uint8Array, Uint8Array> {
    return new TransformStream({
      transform: (chunk, controller) => {
        this.add(chunk.byteLength);
        controller.enqueue(chunk);
      },
    });
  }

  #draw(force: boolean): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (!force && now - this.#drawn < REDRAW_MS) return;
    this.#drawn = now;
    const fraction = this.#total === 0
      ? 1
      : Math.min(this.#done / this.#total, 1);
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = "=".repeat(filled) + " ".repeat(BAR_WIDTH - filled);
    const seconds = (now - this.#started) / 1000;
    const rate = seconds > 0 ? (this.#done - this.#skipped) / seconds : 0;
    const left = this.#total - this.#done;
    const eta = rate > 0 ? formatClock(left / rate) : "-:--";
    this.#sink.write(
      `\r\x1b[K${this.#label} [${bar}] ${formatBytes(this.#done)} / ${
        formatBytes(this.#total)
      }  ${formatBytes(Math.round(rate))}/s  ETA ${eta}`,
    );
  }
}
