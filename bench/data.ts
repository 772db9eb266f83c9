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
  return pullStream(chunksOf(size));
}

/**
 * The chunks of blob number `variant` of `size` bytes: the shared pool,
 * its first chunk marked with `variant`, so that blobs (or parts) of one
 * size are distinct blobs.
 */
export function* variantChunks(
  size: number,
  variant: number,
): Generator<Uint8Array> {
  let first = true;
  for (const chunk of chunksOf(size)) {
    if (!first) {
      yield chunk;
      continue;
    }
    first = false;
    const marked = chunk.slice();
    new DataView(marked.buffer).setFloat64(0, variant);
    yield marked;
  }
}

/** A pull stream of {@linkcode variantChunks}. */
export function variantStream(
  size: number,
  variant: number,
): ReadableStream<Uint8Array> {
  return pullStream(variantChunks(size, variant));
}

/** The SHA-384 of blob number `variant` of `size` bytes. */
export function variantHash(size: number, variant: number): string {
  const hash = createHash("sha384");
  for (const chunk of variantChunks(size, variant)) hash.update(chunk);
  return hash.digest("hex");
}

function pullStream(it: Iterator<Uint8Array>): ReadableStream<Uint8Array> {
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
