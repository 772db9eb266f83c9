/**
 * Small helpers shared by the test suites: deterministic content, streams
 * built from it, and reading bodies back.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Returns `size` deterministic pseudo-random bytes (xorshift from `seed`). */
export function bytesOf(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  fillPseudoRandom(out, seed);
  return out;
}

function fillPseudoRandom(out: Uint8Array, seed: number): number {
  let x = seed | 0 || 1;
  const words = new Uint32Array(out.buffer, out.byteOffset, out.length >> 2);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < out.length; i++) out[i] = i & 0xff;
  return x;
}

/**
 * Returns a stream of `size` deterministic bytes in chunks of `chunkSize`,
 * generated as it is read, so a large blob never sits in memory.
 */
export function generatedStream(
  size: number,
  chunkSize = 64 * 1024,
  seed = 7,
): ReadableStream<Uint8Array> {
  let sent = 0;
  let state = seed;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      const chunk = new Uint8Array(Math.min(chunkSize, size - sent));
      state = fillPseudoRandom(chunk, state) + 1;
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  }, { highWaterMark: 0 });
}

/** Returns the SHA-384 hex of `bytes`. */
export function hashOf(bytes: Uint8Array | string): string {
  return createHash("sha384").update(bytes).digest("hex");
}

/** Splits `bytes` into a stream of chunks of at most `chunkSize` bytes. */
export function chunkedStream(
  bytes: Uint8Array,
  chunkSize: number,
): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(at, at + chunkSize));
      at += chunkSize;
    },
  }, { highWaterMark: 0 });
}

/**
 * A stream that yields the first `failAfter` bytes of `bytes` and then
 * errors with `error`, as a client that disconnects midway.
 */
export function failingStream(
  bytes: Uint8Array,
  failAfter: number,
  error: Error = new Error("source failed midway"),
): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      if (!sent) {
        sent = true;
        controller.enqueue(bytes.slice(0, failAfter));
        return;
      }
      controller.error(error);
    },
  }, { highWaterMark: 0 });
}

/** Joins `parts` into one new `Uint8Array`. */
export function concatBytes(
  parts: readonly Uint8Array[],
): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Reads a whole body into one `Uint8Array`. */
export async function readAll(
  body: ReadableStream<Uint8Array>,
): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** Collects an async iterable into an array. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
