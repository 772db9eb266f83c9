/**
 * Sending a request body that streams, with its `Content-Length`, through
 * `node:http`. S3 refuses a PUT in chunked transfer encoding (411
 * `MissingContentLength`), and `fetch` sends every stream body chunked,
 * whatever `Content-Length` it is given; `node:http` (in Deno, Node and Bun
 * alike) writes exactly the declared bytes, as they come.
 *
 * @module
 */

/**
 * What came back: the status, the headers and the text of the body (read
 * whole: S3 answers a PUT with an empty body or a short XML document).
 */
export interface StreamedAnswer {
  /** The HTTP status. */
  status: number;
  /** The headers, lowercase names. */
  headers: Headers;
  /** The body as text. */
  text: string;
}

/**
 * The most of an answer's body kept: S3 answers a PUT with nothing or a
 * short XML document; a proxy's error page is cut there.
 */
const MAX_ANSWER_BYTES = 64 * 1024;

/**
 * Sends `method url` with `headers` (which must hold the `content-length`
 * of `body`) and the bytes of `body`, written as they come and only as fast
 * as the connection takes them.
 *
 * The last chunk is held back until `body` has ended: a body that fails at
 * its end (a verification that only knows at the last byte whether the
 * content is right) then never delivers its declared length, so the server
 * drops the request rather than store it. When `body` fails, the request
 * is destroyed and the promise rejects with `body`'s own error.
 *
 * `timeoutMs` bounds the wait for the answer once the body has been sent in
 * full (`onTimeout` makes the error); the time the body takes to arrive is
 * its producer's, not the server's.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sendStreamed } from "./stream_put.ts";
 *
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) =>
 *   new Response(`${req.headers.get("content-length")} ${(await req.arrayBuffer()).byteLength}`));
 * const body = new Blob(["hello, ", "world"]).stream();
 * const answer = await sendStreamed(
 *   "PUT", new URL(`http://127.0.0.1:${server.addr.port}/x`), new Headers({ "content-length": "12" }), body,
 *   { timeoutMs: 5000, onTimeout: () => new Error("timeout") },
 * );
 * assert.strictEqual(answer.text, "12 12");
 * await server.shutdown();
 * ```
 */
export async function sendStreamed(
  method: string,
  url: URL,
  headers: Headers,
  body: ReadableStream<Uint8Array>,
  options: { timeoutMs: number; onTimeout: () => Error },
): Promise<StreamedAnswer> {
  const http = url.protocol === "https:"
    ? await import("node:https")
    : await import("node:http");
  const reader = body.getReader();
  const { promise, resolve, reject } = deferred<StreamedAnswer>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const req = http.request(url, {
    method,
    headers: Object.fromEntries(headers),
  }, (res) => {
    clearTimeout(timer);
    const chunks: Uint8Array[] = [];
    let size = 0;
    res.on("data", (chunk: Uint8Array) => {
      if (size < MAX_ANSWER_BYTES) chunks.push(chunk);
      size += chunk.byteLength;
    });
    res.on("end", () => {
      const answer = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value !== undefined) answer.set(name, String(value));
      }
      resolve({
        status: res.statusCode ?? 0,
        headers: answer,
        text: new TextDecoder().decode(concat(chunks)),
      });
    });
    res.on("error", reject);
  });
  req.on("error", (err: Error) => {
    clearTimeout(timer);
    reject(err);
  });
  pump(reader, req).then(() => {
    timer = setTimeout(
      () => req.destroy(options.onTimeout()),
      options.timeoutMs,
    );
  }, (err) => {
    req.destroy(err instanceof Error ? err : new Error(String(err)));
    reject(err); // the body's own error, not the destroyed socket's
  });
  return await promise;
}

/** The part of a `node:http` request the pump writes to. */
interface Writable {
  write(chunk: Uint8Array): boolean;
  end(chunk?: Uint8Array): void;
  once(event: "drain", listener: () => void): unknown;
}

/**
 * Writes `reader`'s chunks to `req`, waiting for `drain` when its buffer is
 * full, holding each chunk back until the next one (or the end) is known,
 * so that the last is written only once the body has ended without error.
 */
async function pump(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  req: Writable,
): Promise<void> {
  let held: Uint8Array | undefined;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (value.byteLength === 0) continue;
      if (held && !req.write(held)) {
        await new Promise<void>((resolve) => req.once("drain", resolve));
      }
      held = value;
    }
  } catch (err) {
    reader.releaseLock();
    throw err;
  }
  req.end(held);
}

function deferred<T>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
} {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}
