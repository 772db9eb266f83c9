/**
 * Cutting one stream into consecutive parts of exact sizes, each a stream
 * of its own, for a multipart upload that sends them one after another.
 *
 * @module
 */

import { SizeMismatchError } from "../errors.ts";

/**
 * The sizes of the parts a blob of `size` bytes goes up in: `partSize`
 * each, the last one the rest (one part, possibly empty, when the blob fits
 * in one).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { partSizes } from "./parts.ts";
 *
 * assert.deepStrictEqual(partSizes(12, 5), [5, 5, 2]);
 * assert.deepStrictEqual(partSizes(10, 5), [5, 5]);
 * assert.deepStrictEqual(partSizes(0, 5), [0]);
 * ```
 */
export function partSizes(size: number, partSize: number): number[] {
  if (size <= partSize) return [size];
  const sizes = Array(Math.floor(size / partSize)).fill(partSize);
  if (size % partSize) sizes.push(size % partSize);
  return sizes;
}

/**
 * Reads a stream part by part: {@linkcode PartReader.next} returns a stream
 * of exactly the next `size` bytes, splitting chunks at the boundary. The
 * last part (`last: true`) also waits for the source's own end before it
 * ends, so that a source that fails only at its end (a verification)
 * fails the last part rather than passing it as good; bytes beyond the
 * declared total are a `SizeMismatchError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { PartReader } from "./parts.ts";
 *
 * const parts = new PartReader(new Blob(["hello, ", "world"]).stream());
 * assert.strictEqual(await new Response(parts.next(5)).text(), "hello");
 * assert.strictEqual(await new Response(parts.next(7, { last: true })).text(), ", world");
 * ```
 */
export class PartReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  #leftover: Uint8Array | undefined;
  #read = 0;

  /** Reads `source`, which it locks. */
  constructor(source: ReadableStream<Uint8Array>) {
    this.#reader = source.getReader();
  }

  /**
   * The next `size` bytes as a stream. Read it to its end before asking
   * for the next part.
   */
  next(size: number, { last = false } = {}): ReadableStream<Uint8Array> {
    let remaining = size;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (remaining === 0) {
          if (last) await this.#expectEnd();
          return controller.close();
        }
        const chunk = this.#leftover ?? await this.#chunk(size - remaining);
        this.#leftover = undefined;
        if (chunk.byteLength > remaining) {
          this.#leftover = chunk.subarray(remaining);
        }
        const piece = chunk.subarray(0, remaining);
        remaining -= piece.byteLength;
        controller.enqueue(piece);
      },
      cancel: (reason) => this.#reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /** Gives up the source (after a failure elsewhere). */
  async cancel(reason?: unknown): Promise<void> {
    await this.#reader.cancel(reason).catch(() => {});
  }

  /** The next non-empty chunk; the source ending here is a short part. */
  async #chunk(got: number): Promise<Uint8Array> {
    for (;;) {
      const { done, value } = await this.#reader.read();
      if (done) throw new SizeMismatchError(this.#read + got + 1, this.#read);
      this.#read += value.byteLength;
      if (value.byteLength > 0) return value;
    }
  }

  async #expectEnd(): Promise<void> {
    if (this.#leftover) {
      throw new SizeMismatchError(
        this.#read - this.#leftover.byteLength,
        this.#read,
      );
    }
    for (;;) {
      const { done, value } = await this.#reader.read();
      if (done) return;
      if (value.byteLength > 0) {
        throw new SizeMismatchError(this.#read, this.#read + value.byteLength);
      }
    }
  }
}
