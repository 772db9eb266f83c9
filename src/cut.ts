/**
 * Cutting a byte stream into parts of a fixed size, each gathered in
 * memory: for uploads whose parts must be hashed before they are stored
 * (the hash names them), when the client cannot say what they hash to.
 *
 * @module
 */

/**
 * Reads `source` and yields it in parts of exactly `partSize` bytes (the
 * last one shorter, never empty). Each part is a fresh `Uint8Array` the
 * caller may keep. When `source` fails, the bytes of the part being
 * gathered are in {@linkcode PartCutter.partial} (a resumable upload
 * keeps what arrived), and the error is thrown on.
 *
 * Memory: one part, plus the chunk being copied.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { PartCutter } from "@blobstore/blobstore";
 *
 * const cutter = new PartCutter(new Blob(["abcdefg"]).stream(), 3);
 * const parts: string[] = [];
 * for await (const part of cutter.parts()) parts.push(new TextDecoder().decode(part));
 * assert.deepStrictEqual(parts, ["abc", "def", "g"]);
 * assert(cutter.bytes === 7);
 * ```
 */
export class PartCutter {
  #source: ReadableStream<Uint8Array>;
  #partSize: number;
  #part?: Uint8Array;
  #filled = 0;
  #bytes = 0;

  /** Cuts `source` into parts of `partSize` bytes. */
  constructor(source: ReadableStream<Uint8Array>, partSize: number) {
    if (!Number.isSafeInteger(partSize) || partSize <= 0) {
      throw new RangeError(
        `invalid part size (expected a positive integer, got ${partSize})`,
      );
    }
    this.#source = source;
    this.#partSize = partSize;
  }

  /** How many bytes have been read from the source so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The bytes of the unfinished part, after the source failed. */
  get partial(): Uint8Array {
    return this.#part?.subarray(0, this.#filled) ?? new Uint8Array(0);
  }

  /** Yields the parts, in order. */
  async *parts(): AsyncGenerator<Uint8Array> {
    for await (const chunk of this.#source) {
      let at = 0;
      while (at < chunk.byteLength) {
        this.#part ??= new Uint8Array(this.#partSize);
        const n = Math.min(
          chunk.byteLength - at,
          this.#partSize - this.#filled,
        );
        this.#part.set(chunk.subarray(at, at + n), this.#filled);
        this.#filled += n;
        this.#bytes += n;
        at += n;
        if (this.#filled === this.#partSize) {
          const part = this.#part;
          this.#part = undefined;
          this.#filled = 0;
          yield part;
        }
      }
    }
    if (this.#filled > 0) {
      const last = this.#part!.subarray(0, this.#filled);
      this.#part = undefined;
      this.#filled = 0;
      yield last;
    }
  }
}
