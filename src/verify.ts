/**
 * Verification of content against its declared hash and size, as it flows.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { HashMismatchError, SizeMismatchError } from "./errors.ts";

/**
 * A `TransformStream` that passes bytes through unchanged and errors the
 * stream when they are not `size` bytes whose SHA-384 is `hash`. Excess bytes
 * error the stream as soon as they arrive, before they are passed on; a short
 * or wrong content errors it at its end, in place of the final close.
 *
 * Backends pipe what they store through it and commit only once the stream
 * has ended cleanly, so a mismatch never leaves anything visible.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SizeMismatchError, VerifyStream } from "@blobstore/blobstore";
 *
 * const hash = "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7";
 * const good = new Blob(["abc"]).stream().pipeThrough(new VerifyStream(3, hash));
 * assert((await new Response(good).text()) === "abc");
 *
 * const long = new Blob(["abcd"]).stream().pipeThrough(new VerifyStream(3, hash));
 * const err = await new Response(long).text().catch((e) => e);
 * assert(err instanceof SizeMismatchError);
 * ```
 */
export class VerifyStream extends TransformStream<Uint8Array, Uint8Array> {
  /** Creates a stream that checks for exactly `size` bytes hashing to `hash`. */
  constructor(size: number, hash: string) {
    const digest = createHash("sha384");
    let count = 0;
    super({
      transform(chunk, controller) {
        count += chunk.byteLength;
        if (count > size) throw new SizeMismatchError(size, count);
        digest.update(chunk);
        controller.enqueue(chunk);
      },
      flush() {
        if (count !== size) throw new SizeMismatchError(size, count);
        const actual = digest.digest("hex");
        if (actual !== hash) throw new HashMismatchError(hash, actual);
      },
    });
  }
}
