/**
 * Cutting one verified byte stream into consecutive request bodies: the
 * whole object for a plain put, or the segments of a Static Large Object.
 *
 * @module
 */

import { SizeMismatchError } from "../errors.ts";

/**
 * Bytes a segment reads (and so verifies) ahead of the request that sends
 * it: hashing the next chunks while the socket waits for Swift keeps both
 * busy. Bounded, so memory stays flat whatever the blob's size.
 */
const READ_AHEAD = 1024 * 1024;

/**
 * What a segment's owner learns about its body as it streams.
 *
 * @example Starting a request's deadline once its body is sent in full
 * ```ts
 * import assert from "node:assert";
 * import { SegmentReader, type SegmentEvents } from "./segments.ts";
 *
 * let sent = false;
 * const events: SegmentEvents = { onEnd: () => (sent = true) };
 * const segments = new SegmentReader(new Blob(["abc"]).stream().getReader());
 * await new Response(segments.segment(3, true, events)).text();
 * assert(sent);
 * ```
 */
export interface SegmentEvents {
  /** The segment's last byte was handed over: the request is fully sent. */
  onEnd?(): void;
  /** Reading the source failed (its own error, or a failed verification). */
  onError?(err: unknown): void;
  /**
   * The request stopped taking bytes: the read-ahead was full and stayed so
   * for `stallMs` (the server, not the source, is stuck). Not called while
   * the segment waits on the source, however slow.
   */
  onStall?(): void;
  /** How long the request may leave a full read-ahead untaken, in ms. */
  stallMs?: number;
}

/**
 * Hands out consecutive segments of a source, each as a `ReadableStream`
 * of exactly the bytes asked for, without copying (a chunk that straddles
 * two segments is split with `subarray`) and reading at most 1 MiB ahead.
 *
 * The last segment closes only once the source itself has ended: the
 * source is a `VerifyStream`'s output, which reports a wrong size or hash
 * by erroring in place of its end, so a request body that closes cleanly
 * has been verified in full. A failure errors the segment (and so aborts
 * its request) instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SegmentReader } from "./segments.ts";
 *
 * const source = new Blob(["abcdef"]).stream().getReader();
 * const segments = new SegmentReader(source);
 * const first = await new Response(segments.segment(4, false)).text();
 * const second = await new Response(segments.segment(2, true)).text();
 * assert(first === "abcd" && second === "ef");
 * ```
 */
export class SegmentReader {
  readonly #source: ReadableStreamDefaultReader<Uint8Array>;
  #leftover: Uint8Array | undefined;

  /** Reads segments from `source` (normally a `VerifyStream`'s reader). */
  constructor(source: ReadableStreamDefaultReader<Uint8Array>) {
    this.#source = source;
  }

  /**
   * The next `length` bytes of the source as a stream. When `last`, the
   * stream closes only after the source has ended cleanly. Cancelling the
   * stream cancels the source.
   */
  segment(
    length: number,
    last: boolean,
    events: SegmentEvents = {},
  ): ReadableStream<Uint8Array> {
    let remaining = length;
    let stall: ReturnType<typeof setTimeout> | undefined;
    const unwatch = () => {
      clearTimeout(stall);
      stall = undefined;
    };
    // Started when the queue is full, cleared by the next pull: it only
    // runs while the consumer (the request) is not taking bytes.
    const watch = (controller: ReadableStreamDefaultController) => {
      const { onStall, stallMs } = events;
      if (!onStall || stallMs === undefined || remaining === 0) return;
      if ((controller.desiredSize ?? 1) <= 0) {
        stall = setTimeout(onStall, stallMs);
      }
    };
    const finish = async (controller: ReadableStreamDefaultController) => {
      if (last) await this.#expectEnd(length);
      controller.close();
      events.onEnd?.();
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        unwatch();
        try {
          if (remaining === 0) return await finish(controller);
          const chunk = await this.#next(length - remaining, length);
          const taken = chunk.byteLength > remaining
            ? chunk.subarray(0, remaining)
            : chunk;
          this.#leftover = taken === chunk
            ? undefined
            : chunk.subarray(remaining);
          remaining -= taken.byteLength;
          controller.enqueue(taken);
          // an intermediate segment ends with its last byte; the last one
          // waits for the source's end (the verdict of VerifyStream)
          if (remaining === 0 && !last) await finish(controller);
          watch(controller);
        } catch (err) {
          events.onError?.(err);
          throw err;
        }
      },
      cancel: (reason) => {
        unwatch();
        return this.#source.cancel(reason);
      },
    }, { highWaterMark: READ_AHEAD, size: (chunk) => chunk.byteLength });
  }

  async #next(got: number, length: number): Promise<Uint8Array> {
    if (this.#leftover) return this.#leftover;
    for (;;) {
      const { done, value } = await this.#source.read();
      // VerifyStream errors on a short source before it ends; this only
      // guards against a source that was not verified
      if (done) throw new SizeMismatchError(length, got);
      if (value.byteLength > 0) return value;
    }
  }

  async #expectEnd(length: number): Promise<void> {
    if (this.#leftover) throw new SizeMismatchError(length, length + 1);
    for (;;) {
      const { done, value } = await this.#source.read();
      if (done) return;
      if (value.byteLength > 0) throw new SizeMismatchError(length, length + 1);
    }
  }
}
