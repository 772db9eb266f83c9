/**
 * SHA-384 of a byte stream, computed as the bytes flow past.
 *
 * Web Crypto's `subtle.digest` wants the whole input at once, so the
 * incremental hash comes from `node:crypto`, which Deno, Node and Bun ship.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { BadParamsError } from "./errors.ts";
import { type BlobSource, toReadableStream } from "./source.ts";

const HASH_PATTERN = /^[0-9a-f]{96}$/;

/**
 * Reports whether `hash` is a plausible SHA-384 hash: 96 lowercase hex
 * characters.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isValidHash } from "@blobstore/blobstore";
 *
 * assert(isValidHash("0".repeat(96)));
 * assert(!isValidHash("xyz"));
 * ```
 */
export function isValidHash(hash: unknown): hash is string {
  return typeof hash === "string" && HASH_PATTERN.test(hash);
}

/**
 * Throws `BadParamsError` unless `hash` is a plausible SHA-384 hash (96
 * lowercase hex characters), saying what was got (cut short when long).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { checkHash } from "./digest.ts";
 *
 * checkHash("0".repeat(96));
 * assert.throws(() => checkHash("abc"), /expected 96 lowercase hex characters, got "abc"/);
 * ```
 */
export function checkHash(hash: string, what = "hash"): void {
  if (isValidHash(hash)) return;
  const text = String(hash);
  throw new BadParamsError(
    `invalid ${what} (expected 96 lowercase hex characters, got ${
      JSON.stringify(text.length > 120 ? `${text.slice(0, 120)}…` : text)
    })`,
  );
}

/**
 * A `TransformStream` that passes bytes through unchanged while computing
 * their SHA-384 digest and counting them. `digest` resolves to the lowercase
 * hex digest once the stream has ended, and rejects if it was aborted or
 * cancelled instead.
 *
 * @example Hashing while copying
 * ```ts
 * import assert from "node:assert";
 * import { Sha384Stream } from "@blobstore/blobstore";
 *
 * const hasher = new Sha384Stream();
 * const out = new Blob(["abc"]).stream().pipeThrough(hasher);
 * await new Response(out).arrayBuffer();
 * assert((await hasher.digest).startsWith("cb00753f45a35e8b"));
 * assert(hasher.bytes === 3);
 * ```
 */
export class Sha384Stream extends TransformStream<Uint8Array, Uint8Array> {
  /** The lowercase hex SHA-384 of every byte that passed, once the stream ends. */
  readonly digest: Promise<string>;
  #count: { bytes: number };

  /** Creates a stream with a fresh hash state. */
  constructor() {
    const hash: Hash = createHash("sha384");
    // Not Promise.withResolvers: Node 20 lacks it.
    let resolve!: (digest: string) => void;
    let reject!: (reason: unknown) => void;
    const promise = new Promise<string>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // The digest may never be awaited when the pipe fails for another
    // reason: mark it handled so its rejection does not kill the process.
    promise.catch(() => {});
    const count = { bytes: 0 };
    super({
      transform(chunk, controller) {
        hash.update(chunk);
        count.bytes += chunk.byteLength;
        controller.enqueue(chunk);
      },
      flush() {
        resolve(hash.digest("hex"));
      },
      cancel(reason) {
        reject(reason ?? new Error("stream cancelled before its end"));
      },
    });
    this.#count = count;
    this.digest = promise;
  }

  /** The number of bytes that have passed so far. */
  get bytes(): number {
    return this.#count.bytes;
  }
}

/**
 * Returns the lowercase hex SHA-384 of everything `source` yields, reading
 * it as a stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sha384 } from "@blobstore/blobstore";
 *
 * const hash = await sha384(new TextEncoder().encode("abc"));
 * assert(hash.startsWith("cb00753f45a35e8b"));
 * ```
 */
export async function sha384(source: BlobSource): Promise<string> {
  const hash = createHash("sha384");
  for await (const chunk of toReadableStream(source)) hash.update(chunk);
  return hash.digest("hex");
}
