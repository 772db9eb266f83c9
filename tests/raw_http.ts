/**
 * A minimal HTTP/1.1 client over a TCP connection, for tests and benches
 * that must stream a request body with a `Content-Length` (Deno's `fetch`
 * sends a streamed body chunked, without one) or drop the connection
 * halfway through a body.
 *
 * @module
 */

import { concatBytes } from "./helpers.ts";

/** A response read by {@linkcode rawRequest}. */
export interface RawResponse {
  status: number;
  headers: Headers;
  /** The body, read whole (responses in tests are small or discarded). */
  body: Uint8Array;
  /** The body as JSON (`undefined` when empty). */
  json(): unknown;
}

/** What to send. */
export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  /** The body: sent as is, in chunks; `Content-Length` must be in `headers`. */
  body?: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
  /** Close the connection after this many body bytes, without a response. */
  abortAfter?: number;
  /** Count the response body without keeping it. */
  discardBody?: boolean;
}

const encoder = new TextEncoder();

/** Sends one request on a fresh connection to 127.0.0.1:`port` and reads the response. */
export async function rawRequest(
  port: number,
  request: RawRequest,
): Promise<RawResponse | undefined> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const head = [
    `${request.method} ${request.path} HTTP/1.1`,
    `host: 127.0.0.1:${port}`,
    "connection: close",
    ...Object.entries(request.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
    "",
    "",
  ].join("\r\n");
  // Read the response while the body is sent: the server may answer early
  // (411, 413, 400) and stop reading.
  const response = request.abortAfter === undefined
    ? readResponse(conn, request.discardBody ?? false)
    : undefined;
  response?.catch(() => {});
  try {
    await writeAll(conn, encoder.encode(head));
    let sent = 0;
    for await (const chunk of request.body ?? []) {
      if (
        request.abortAfter !== undefined &&
        sent + chunk.length >= request.abortAfter
      ) {
        await writeAll(conn, chunk.subarray(0, request.abortAfter - sent));
        conn.close();
        return undefined;
      }
      await writeAll(conn, chunk);
      sent += chunk.length;
    }
  } catch (err) {
    if (!response) throw err;
    // The server stopped reading: its answer says why.
  }
  try {
    return await response;
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let n = 0; n < bytes.length;) n += await conn.write(bytes.subarray(n));
}

async function readResponse(
  conn: Deno.Conn,
  discardBody: boolean,
): Promise<RawResponse> {
  const buffer = new Uint8Array(64 * 1024);
  let pending: Uint8Array = new Uint8Array(0);
  let headEnd = -1;
  while (headEnd === -1) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error("connection closed before a response");
    pending = concatBytes([pending, buffer.subarray(0, n)]);
    headEnd = indexOfHeadEnd(pending);
  }
  const { status, headers } = parseHead(pending.subarray(0, headEnd));
  let rest: Uint8Array = pending.subarray(headEnd + 4);
  const chunks: Uint8Array[] = [];
  let length = headers.has("content-length")
    ? Number(headers.get("content-length"))
    : Infinity;
  if (status === 204 || status === 304) length = 0;
  let received = 0;
  const take = (bytes: Uint8Array) => {
    received += bytes.length;
    if (!discardBody) chunks.push(bytes.slice());
  };
  if (rest.length > 0) take(rest.subarray(0, Math.min(rest.length, length)));
  while (received < length) {
    const n = await conn.read(buffer);
    if (n === null) break;
    rest = buffer.subarray(0, Math.min(n, length - received));
    take(rest);
  }
  const body = concatBytes(chunks);
  return {
    status,
    headers,
    body: discardBody ? new Uint8Array(0) : body,
    json: () =>
      body.length === 0
        ? undefined
        : JSON.parse(new TextDecoder().decode(body)),
  };
}

/** Where the response head of `bytes` ends (its blank line), or -1. */
export function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (
      bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 &&
      bytes[i + 3] === 10
    ) return i;
  }
  return -1;
}

/** The status and headers of a response head (without its blank line). */
export function parseHead(
  head: Uint8Array,
): { status: number; headers: Headers } {
  const [statusLine, ...lines] = new TextDecoder().decode(head).split("\r\n");
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
  }
  return { status: Number(statusLine.split(" ")[1]), headers };
}
