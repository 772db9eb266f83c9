/**
 * Misbehaving clients for the fault suite: request bodies that end early,
 * stall, error at every stage, or carry the wrong bytes, as sources for a
 * store and as raw HTTP requests.
 *
 * @module
 */

import { IntegrityError } from "../../src/errors.ts";
import { bytesOf, hashOf } from "../helpers.ts";

/** A client's own failure (it went away, or gave up waiting). */
export class ClientGone extends Error {}

/** One way for a client to misbehave, at one stage of its body. */
export interface ClientFault {
  /** For test names. */
  name: string;
  /** The body a store receives (as a stream of the client's bytes). */
  source(bytes: Uint8Array): ReadableStream<Uint8Array>;
  /** What the put must fail with: the client's own error, or an integrity error. */
  expect: "client" | "integrity";
}

/** Yields `bytes` in 16 KiB chunks up to `upTo`, then calls `after`. */
function body(
  bytes: Uint8Array,
  upTo: number,
  after: (c: ReadableStreamDefaultController<Uint8Array>) => Promise<void>,
): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    async pull(controller) {
      if (at < upTo) {
        const end = Math.min(at + 16 * 1024, upTo);
        controller.enqueue(bytes.slice(at, end));
        at = end;
        return;
      }
      await after(controller);
    },
  }, { highWaterMark: 0 });
}

function flipped(bytes: Uint8Array, at: number): Uint8Array {
  const copy = bytes.slice();
  copy[at] ^= 0xff;
  return copy;
}

const gone = (c: ReadableStreamDefaultController<Uint8Array>) => {
  c.error(new ClientGone("client went away"));
  return Promise.resolve();
};

/** Every client fault, at every stage: before the body, midway, at the end. */
export function clientFaults(stallMs: number): ClientFault[] {
  const faults: ClientFault[] = [];
  for (
    const [stage, at] of [
      ["before the body", () => 0],
      ["mid body", (n: number) => n >> 1],
      ["at the end", (n: number) => n],
    ] as const
  ) {
    faults.push({
      name: `disconnects ${stage}`,
      source: (b) => body(b, at(b.length), gone),
      expect: "client",
    });
    faults.push({
      name: `stalls then times out ${stage}`,
      source: (b) =>
        body(b, at(b.length), async (c) => {
          await new Promise((r) => setTimeout(r, stallMs));
          c.error(new ClientGone(`client gave up after ${stallMs} ms`));
        }),
      expect: "client",
    });
    faults.push({
      name: `sends a wrong byte ${stage}`,
      source: (b) => {
        const wrong = flipped(b, Math.min(at(b.length), b.length - 1));
        return body(wrong, b.length, (c) => Promise.resolve(c.close()));
      },
      expect: "integrity",
    });
  }
  faults.push({
    name: "ends one byte short",
    source: (b) => body(b, b.length - 1, (c) => Promise.resolve(c.close())),
    expect: "integrity",
  });
  faults.push({
    name: "sends one byte too many",
    source: (b) => {
      const longer = new Uint8Array(b.length + 1);
      longer.set(b);
      return body(longer, longer.length, (c) => Promise.resolve(c.close()));
    },
    expect: "integrity",
  });
  return faults;
}

/** A fresh blob for one case. */
export function caseBlob(size: number, seed: number) {
  const bytes = bytesOf(size, seed);
  return { bytes, hash: hashOf(bytes) };
}

/** Whether `err` is what `fault` should produce. */
export function expected(fault: ClientFault, err: unknown): boolean {
  if (fault.expect === "client") {
    for (let e = err, i = 0; e && i < 5; i++) {
      if (e instanceof ClientGone) return true;
      e = (e as { cause?: unknown }).cause;
    }
    return false;
  }
  return err instanceof IntegrityError;
}

/** Writes all of `bytes` to `conn`. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array) {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

/**
 * Sends `PUT path` (or `options.method`, with `options.headers`) with
 * `Content-Length: declared` and the first `send` bytes of `bytes`; then,
 * after `stallMs`, either closes the connection (`hangUp`) or waits for
 * the server's answer. Returns the status line's code, or 0 when no answer
 * came.
 */
export async function rawPut(
  port: number,
  path: string,
  bytes: Uint8Array,
  options: {
    declared: number;
    send: number;
    stallMs?: number;
    hangUp: boolean;
    method?: string;
    headers?: Record<string, string>;
  },
): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const extra = Object.entries(options.headers ?? {})
      .map(([name, value]) => `${name}: ${value}\r\n`).join("");
    const head =
      `${options.method ?? "PUT"} ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n` +
      `content-length: ${options.declared}\r\nconnection: close\r\n` +
      `${extra}\r\n`;
    await writeAll(conn, new TextEncoder().encode(head));
    for (let at = 0; at < options.send; at += 16 * 1024) {
      await writeAll(
        conn,
        bytes.subarray(at, Math.min(at + 16 * 1024, options.send)),
      ).catch(() => {}); // the server may have answered and closed early
    }
    if (options.stallMs) {
      await new Promise((r) => setTimeout(r, options.stallMs));
    }
    if (options.hangUp) return 0;
    const buffer = new Uint8Array(4096);
    const n = await conn.read(buffer).catch(() => null);
    if (!n) return 0;
    const line = new TextDecoder().decode(buffer.subarray(0, n));
    return Number(/^HTTP\/1\.1 (\d{3})/.exec(line)?.[1] ?? 0);
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}
