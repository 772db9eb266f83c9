/**
 * Verification of content against its declared hash and size, as it flows.
 *
 * @module
 */

import { HashMismatchError, SizeMismatchError } from "./errors.ts";
import { type Hashing, type Sha384Job, startSha384 } from "./hashing.ts";

/**
 * A `TransformStream` that passes bytes through unchanged and errors the
 * stream when they are not `size` bytes whose SHA-384 is `hash`. Excess bytes
 * error the stream as soon as they arrive, before they are passed on; a short
 * or wrong content errors it at its end, in place of the final close.
 *
 * Backends pipe what they store through it (see {@linkcode verified}) and
 * commit only once the stream has ended cleanly, so a mismatch never leaves
 * anything visible. Large bodies are hashed on a worker thread (see
 * `Hashing`); the verdict still comes before the end.
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
  /**
   * With `options.resume`: the state of the resumable hash after every
   * byte, once the stream has ended verified. Rejects if it did not.
   */
  readonly resumed: Promise<Uint8Array>;
  /** The size this stream checks for. */
  readonly size: number;
  /** The hash this stream checks for. */
  readonly hash: string;

  /** Creates a stream that checks for exactly `size` bytes hashing to `hash`. */
  constructor(size: number, hash: string, options: VerifyOptions = {}) {
    const { hashing, resume } = options;
    const jobs: Sha384Job[] = [];
    let count = 0;
    let resolveState!: (state: Uint8Array) => void;
    let rejectState!: (reason: unknown) => void;
    const resumed = new Promise<Uint8Array>((resolve, reject) => {
      resolveState = resolve;
      rejectState = reject;
    });
    resumed.catch(() => {});
    const abort = (reason: unknown) => {
      for (const job of jobs) job.abort();
      rejectState(reason);
    };
    super({
      async start() {
        jobs.push(await startSha384({ hashing, size }));
        if (resume !== undefined) {
          jobs.push(await startSha384({ hashing, size, resume }));
        }
      },
      async transform(chunk, controller) {
        count += chunk.byteLength;
        if (count > size) {
          const error = new SizeMismatchError(size, count);
          abort(error);
          throw error;
        }
        try {
          for (const job of jobs) await job.update(chunk);
        } catch (err) {
          abort(err);
          throw err;
        }
        controller.enqueue(chunk);
      },
      async flush() {
        try {
          if (count !== size) throw new SizeMismatchError(size, count);
          const [plain, running] = await Promise.all(
            jobs.map((job) => job.finish()),
          );
          if (plain.digest !== hash) {
            throw new HashMismatchError(hash, plain.digest);
          }
          if (running) resolveState(running.state!);
        } catch (err) {
          abort(err);
          throw err;
        }
      },
      cancel(reason) {
        abort(reason ?? new Error("stream cancelled before its end"));
      },
    });
    this.resumed = resumed;
    this.size = size;
    this.hash = hash;
    VERIFIED.set(this.readable, { size, hash });
  }
}

/**
 * Options of a {@linkcode VerifyStream}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { VerifyOptions } from "@blobstore/blobstore";
 *
 * const options: VerifyOptions = { hashing: "inline" };
 * assert(options.resume === undefined);
 * ```
 */
export interface VerifyOptions {
  /** Where to hash (default `"auto"`: on a worker thread for large sizes). */
  hashing?: Hashing;
  /**
   * Also run a resumable SHA-384 over the bytes, from this saved state
   * (`null`: from the start), and give its state at the end as
   * {@linkcode VerifyStream.resumed}.
   */
  resume?: Uint8Array | null;
}

/** The outputs of VerifyStreams, with what they verify. */
const VERIFIED = new WeakMap<ReadableStream, { size: number; hash: string }>();

/**
 * Returns `body` verified to be `size` bytes hashing to `hash`: piped
 * through a new {@linkcode VerifyStream}, unless it is already the output of
 * one that checks exactly that (as the store passes it to backends), so
 * that nothing is hashed twice.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { verified, VerifyStream } from "@blobstore/blobstore";
 *
 * const hash = "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7";
 * const checked = new Blob(["abc"]).stream().pipeThrough(new VerifyStream(3, hash));
 * assert(verified(checked, 3, hash) === checked);
 * assert((await new Response(verified(new Blob(["abc"]).stream(), 3, hash)).text()) === "abc");
 * ```
 */
export function verified(
  body: ReadableStream<Uint8Array>,
  size: number,
  hash: string,
): ReadableStream<Uint8Array> {
  const known = VERIFIED.get(body);
  if (known && known.size === size && known.hash === hash) return body;
  return body.pipeThrough(new VerifyStream(size, hash));
}

/**
 * A stream of `bytes` that `verified` takes as verified to hash to `hash`:
 * for the store's own puts of bytes it has just hashed itself, so that the
 * backend does not hash them again. Not for bytes hashed by anyone else.
 */
export function trustedStream(
  bytes: Uint8Array,
  hash: string,
): ReadableStream<Uint8Array> {
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      if (bytes.byteLength > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
  VERIFIED.set(stream, { size: bytes.byteLength, hash });
  return stream;
}
