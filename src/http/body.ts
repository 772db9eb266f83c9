/**
 * Reading request bodies without ever holding one whole: the declared size
 * of a blob body, the body as a stream whose failures are marked as the
 * client's, and small JSON documents read up to a cap.
 *
 * @module
 */

import { HttpError, RequestBodyError } from "./errors.ts";

/**
 * Returns the size a request declares in `Content-Length`: the store needs
 * it up front to verify the content as it streams. Throws an
 * {@linkcode HttpError} with 411 when it is missing (a chunked body), 400
 * when it is malformed and 413 when it is above `max`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { declaredSize } from "./body.ts";
 *
 * const headers = { "content-length": "3" };
 * const req = new Request("http://x/", { method: "PUT", body: "abc", headers });
 * assert(declaredSize(req, 10) === 3);
 * ```
 */
export function declaredSize(req: Request, max: number): number {
  const header = req.headers.get("content-length");
  if (header === null) {
    throw new HttpError(
      411,
      "length_required",
      "Content-Length is required (chunked request bodies are not accepted: the store verifies the declared size as the bytes arrive)",
    );
  }
  if (!/^\d+$/.test(header.trim())) {
    throw new HttpError(
      400,
      "bad_request",
      `invalid Content-Length (expected a byte count, got ${
        JSON.stringify(header)
      })`,
    );
  }
  const size = Number(header.trim());
  if (!Number.isSafeInteger(size) || size > max) {
    throw new HttpError(
      413,
      "too_large",
      `request body too large (maximum ${max} bytes, got ${header.trim()})`,
    );
  }
  return size;
}

/** The size the request body's chunks are gathered into (see {@linkcode bodyStream}). */
export const BODY_CHUNK_SIZE = 1024 * 1024;

/**
 * How long a request body may stall, in milliseconds, before the request
 * is answered with 408 (see {@linkcode bodyStream}): 30 seconds.
 */
export const DEFAULT_BODY_IDLE_TIMEOUT = 30_000;

/**
 * Returns the request body as a stream that reads it as it is pulled (one
 * chunk of at most {@linkcode BODY_CHUNK_SIZE} ahead, never more) and turns
 * a failure of the connection into a {@linkcode RequestBodyError}, so it is
 * answered as the client's fault.
 *
 * The connection delivers chunks of 16 to 64 KiB; they are gathered into
 * chunks of up to 1 MiB because every chunk costs the SHA-384 verification
 * downstream a fixed overhead: hashing 64 KiB chunks runs at about half the
 * speed of hashing 1 MiB ones.
 *
 * A client that stops sending for `idleTimeout` milliseconds (a stalled or
 * slow-loris body) fails the stream with an {@linkcode HttpError} 408, so
 * the put is abandoned (the backend keeps nothing) and its connection and
 * temporary object are freed rather than held for as long as the client
 * likes. `Infinity` waits for ever.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { bodyStream } from "./body.ts";
 *
 * const req = new Request("http://x/", { method: "PUT", body: "abc" });
 * assert((await new Response(bodyStream(req, 1000)).text()) === "abc");
 * ```
 */
export function bodyStream(
  req: Request,
  idleTimeout: number = DEFAULT_BODY_IDLE_TIMEOUT,
): ReadableStream<Uint8Array> {
  if (!req.body) return new Blob([]).stream();
  const reader = req.body.getReader();
  let carry: Uint8Array | undefined;
  const read = async () => {
    if (carry) {
      const chunk = carry;
      carry = undefined;
      return chunk;
    }
    const result = await readWithin(reader, idleTimeout);
    return result.done ? undefined : result.value;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let buffer: Uint8Array | undefined;
      let filled = 0;
      for (;;) {
        const chunk = await read();
        if (!chunk) {
          if (buffer) controller.enqueue(buffer.subarray(0, filled));
          controller.close();
          return;
        }
        if (!buffer && chunk.byteLength >= BODY_CHUNK_SIZE) {
          controller.enqueue(chunk);
          return;
        }
        if (buffer && filled + chunk.byteLength > BODY_CHUNK_SIZE) {
          carry = chunk; // starts the next chunk
          controller.enqueue(buffer.subarray(0, filled));
          return;
        }
        buffer ??= new Uint8Array(BODY_CHUNK_SIZE);
        buffer.set(chunk, filled);
        filled += chunk.byteLength;
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * Reads a small JSON request body of at most `max` bytes (413 above it, 400
 * when it is not JSON, 408 when it stalls for `idleTimeout` ms). An empty
 * body gives `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { readSmallJson } from "./body.ts";
 *
 * const req = new Request("http://x/", { method: "POST", body: '{"a":1}' });
 * assert((await readSmallJson(req, 1024) as { a: number }).a === 1);
 * ```
 */
export async function readSmallJson(
  req: Request,
  max: number,
  idleTimeout: number = DEFAULT_BODY_IDLE_TIMEOUT,
): Promise<unknown> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of bodyStream(req, idleTimeout)) {
    size += chunk.byteLength;
    if (size > max) {
      throw new HttpError(
        413,
        "too_large",
        `JSON body too large (maximum ${max} bytes)`,
      );
    }
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  const text = new TextDecoder().decode(bytes);
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(
      400,
      "bad_json",
      `invalid JSON body (${err instanceof Error ? err.message : err})`,
    );
  }
}

/**
 * Reads the next chunk, failing with a 408 when none comes within
 * `timeout` ms (the read is cancelled so the connection is let go), and
 * with a {@linkcode RequestBodyError} when the connection fails.
 */
export async function readWithin(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timeout: number,
): Promise<ReadableStreamReadResult<Uint8Array>> {
  const read = reader.read().catch((err) => {
    throw new RequestBodyError(err);
  });
  if (!Number.isFinite(timeout)) return await read;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new HttpError(
        408,
        "request_timeout",
        `request body stalled (expected more bytes within ${timeout} ms, got none)`,
        { connection: "close" },
      );
      reader.cancel(err).catch(() => {});
      reject(err);
    }, timeout);
  });
  try {
    return await Promise.race([read, stalled]);
  } finally {
    clearTimeout(timer);
  }
}
