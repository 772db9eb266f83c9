/**
 * Learning the hash of bytes as they flow, for puts whose client does not
 * say it.
 *
 * @module
 */

import { SizeMismatchError } from "./errors.ts";
import { type Hashing, type Sha384Job, startSha384 } from "./hashing.ts";

/**
 * A `TransformStream` that passes exactly `size` bytes through while it
 * computes their SHA-384 where `hashing` says (`digest`, once the stream
 * has ended). More bytes error it as soon as they arrive, before they are
 * passed on; fewer error it at its end, in place of the final close: the
 * `VerifyStream` of a put that does not know its hash.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { LearnHashStream } from "./learn_hash.ts";
 *
 * const learn = new LearnHashStream(3, "inline");
 * await new Blob(["abc"]).stream().pipeThrough(learn).pipeTo(new WritableStream());
 * assert((await learn.digest).startsWith("cb00753f45a35e8b"));
 * ```
 */
export class LearnHashStream extends TransformStream<Uint8Array, Uint8Array> {
  /** The hex SHA-384 of the bytes, once they have all passed. */
  readonly digest: Promise<string>;

  /** Passes `size` bytes, hashing them where `hashing` says. */
  constructor(size: number, hashing: Hashing) {
    let job: Sha384Job | undefined;
    let count = 0;
    let resolve!: (digest: string) => void;
    let reject!: (reason: unknown) => void;
    const digest = new Promise<string>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    digest.catch(() => {});
    const fail = (reason: unknown) => {
      job?.abort();
      reject(reason);
    };
    super({
      async start() {
        job = await startSha384({ hashing, size });
      },
      async transform(chunk, controller) {
        count += chunk.byteLength;
        try {
          if (count > size) throw new SizeMismatchError(size, count);
          await job!.update(chunk);
        } catch (err) {
          fail(err);
          throw err;
        }
        controller.enqueue(chunk);
      },
      async flush() {
        try {
          if (count !== size) throw new SizeMismatchError(size, count);
          resolve((await job!.finish()).digest);
        } catch (err) {
          fail(err);
          throw err;
        }
      },
      cancel(reason) {
        fail(reason ?? new Error("stream cancelled before its end"));
      },
    });
    this.digest = digest;
  }
}
