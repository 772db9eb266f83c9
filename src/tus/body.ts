/**
 * Reading a tus request body: chunk by chunk as the connection delivers
 * them (nothing held back, so when the client goes away every byte read
 * so far can be kept), bounded by what the upload has room for, failing
 * on a stall, and telling a failure of the body from a failure of what
 * consumes it.
 *
 * @module
 */

import { readWithin } from "../http/body.ts";
import { HttpError } from "../http/errors.ts";

/**
 * A request body read as a stream of the connection's own chunks, with a
 * limit: a body longer than `limit` bytes fails with a 400 as soon as the
 * chunk that crosses it arrives, and that chunk is not passed on. A body
 * that stalls `idleTimeout` ms fails with a 408; one whose connection
 * fails, with a `RequestBodyError`. The failure is kept in
 * {@linkcode TusBody.error}, so that the reader can tell it from its own.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { TusBody } from "./body.ts";
 *
 * const body = new TusBody(new Request("http://x/", { method: "PATCH", body: "abcdef" }), {
 *   limit: 4,
 *   idleTimeout: 1000,
 *   describe: () => "at most 4 bytes",
 * });
 * await assert.rejects(new Response(body.stream).arrayBuffer(), /at most 4 bytes/);
 * assert.strictEqual(body.overLength, true);
 * ```
 */
export class TusBody {
  /** The body, as it arrives. */
  readonly stream: ReadableStream<Uint8Array>;
  /** What the body failed with, once it did. */
  error: unknown;
  #bytes = 0;

  /**
   * Reads the body of `req`; `describe(got)` says what was expected, for
   * the message of a body over `limit`.
   */
  constructor(
    req: Request,
    options: {
      limit: number;
      idleTimeout: number;
      describe: (got: string) => string;
    },
  ) {
    const { limit, idleTimeout, describe } = options;
    const reader = req.body?.getReader();
    this.stream = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (!reader) return controller.close();
        try {
          const { done, value } = await readWithin(reader, idleTimeout);
          if (done) return controller.close();
          if (this.#bytes + value.byteLength > limit) {
            reader.cancel().catch(() => {});
            throw new HttpError(
              400,
              "upload_length_exceeded",
              `request body too long for the upload (expected ${
                describe(`${this.#bytes + value.byteLength}`)
              })`,
            );
          }
          this.#bytes += value.byteLength;
          controller.enqueue(value);
        } catch (err) {
          this.error = err;
          throw err;
        }
      },
      cancel: (reason) => reader?.cancel(reason),
    }, { highWaterMark: 0 });
  }

  /** How many bytes were passed on. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether the body failed by going over its limit. */
  get overLength(): boolean {
    return this.error instanceof HttpError &&
      this.error.code === "upload_length_exceeded";
  }
}

/**
 * Reads the whole of `stream` into memory, up to `max` bytes: more is an
 * `HttpError` 413 (`why` says what the bound is), raised as soon as the
 * chunk that crosses it arrives.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { readBounded } from "./body.ts";
 *
 * assert.strictEqual((await readBounded(new Blob(["abc"]).stream(), 3, "")).length, 3);
 * await assert.rejects(readBounded(new Blob(["abcd"]).stream(), 3, "why"), /why/);
 * ```
 */
export async function readBounded(
  stream: ReadableStream<Uint8Array>,
  max: number,
  why: string,
): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = stream.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      reader.cancel().catch(() => {});
      throw new HttpError(
        413,
        "too_large",
        `request body too large (maximum ${max} bytes: ${why}; got at least ${size})`,
      );
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

/**
 * A stream of `first` (when given), then of `rest`: the tail of a part
 * read back in front of the bytes that continue it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { prepended } from "./body.ts";
 *
 * const stream = prepended(new TextEncoder().encode("ab"), new Blob(["cd"]).stream());
 * assert.strictEqual(await new Response(stream).text(), "abcd");
 * ```
 */
export function prepended(
  first: Uint8Array | undefined,
  rest: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const reader = rest.getReader();
  let pending = first;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (pending) {
        controller.enqueue(pending);
        pending = undefined;
        return;
      }
      const { done, value } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}
