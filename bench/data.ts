/**
 * Benchmark data: a pool of distinct pseudo-random chunks, cycled to make
 * streams of any size without holding them in memory.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** The chunk size every streamed case uses. */
export const CHUNK = 64 * 1024;

const POOL = Array.from({ length: 64 }, (_, i) => {
  const chunk = new Uint8Array(CHUNK);
  let x = i + 1;
  const words = new Uint32Array(chunk.buffer);
  for (let j = 0; j < words.length; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[j] = x;
  }
  return chunk;
});

/** Yields the chunks of a `size`-byte blob (size a multiple of CHUNK). */
export function* chunksOf(size: number): Generator<Uint8Array> {
  for (let i = 0; i < size / CHUNK; i++) yield POOL[i % POOL.length];
}

/** A pull stream of the chunks of a `size`-byte blob. */
export function streamOf(size: number): ReadableStream<Uint8Array> {
  const it = chunksOf(size);
  return new ReadableStream({
    pull(controller) {
      const { done, value } = it.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
  }, { highWaterMark: 0 });
}

/** The SHA-384 of the `size`-byte blob, computed once per size. */
export function hashOfSize(size: number): string {
  const cached = hashes.get(size);
  if (cached) return cached;
  const hash = createHash("sha384");
  for (const chunk of chunksOf(size)) hash.update(chunk);
  const hex = hash.digest("hex");
  hashes.set(size, hex);
  return hex;
}
const hashes = new Map<string | number, string>();

/** Reads a stream to its end, discarding the bytes; returns the count. */
export async function drain(body: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += chunk.byteLength;
  return n;
}
