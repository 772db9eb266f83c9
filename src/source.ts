/**
 * What a blob can be read from, and how each kind becomes a byte stream.
 *
 * @module
 */

/**
 * Anything the store can read a blob from: a Web stream, bytes in memory,
 * a `Blob` (or `File`), or any async iterable of byte chunks (a `Deno.FsFile`
 * readable, a Node stream).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BlobSource } from "@blobstore/blobstore";
 *
 * const sources: BlobSource[] = [
 *   new Uint8Array([1, 2, 3]),
 *   new Blob(["hello"]),
 *   new Blob(["hello"]).stream(),
 * ];
 * assert(sources.length === 3);
 * ```
 */
export type BlobSource =
  | ReadableStream<Uint8Array>
  | Uint8Array
  | Blob
  | AsyncIterable<Uint8Array>;

/**
 * Returns a `ReadableStream` that yields the bytes of `source`. A stream is
 * returned as it is; nothing is read ahead or buffered.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { toReadableStream } from "@blobstore/blobstore";
 *
 * const stream = toReadableStream(new Uint8Array([1, 2, 3]));
 * const { value } = await stream.getReader().read();
 * assert(value?.length === 3);
 * ```
 */
export function toReadableStream(
  source: BlobSource,
): ReadableStream<Uint8Array> {
  if (source instanceof ReadableStream) return source;
  if (source instanceof Uint8Array) return bytesStream(source);
  if (source instanceof Blob) return source.stream();
  if (Symbol.asyncIterator in source) return iterableStream(source);
  throw new TypeError(
    `unsupported blob source (expected ReadableStream, Uint8Array, Blob or AsyncIterable, got ${
      Object.prototype.toString.call(source)
    })`,
  );
}

function bytesStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      if (bytes.length > 0) controller.enqueue(bytes);
      controller.close();
    },
  });
}

/**
 * A stream that ends at once: the body of an empty range.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { emptyStream } from "./source.ts";
 *
 * assert((await new Response(emptyStream()).arrayBuffer()).byteLength === 0);
 * ```
 */
export function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (controller) => controller.close() });
}

/**
 * A stream of the values of `iterable`, pulled one at a time as the reader
 * asks: what `ReadableStream.from` does, for runtimes that lack it (Node
 * before 20.6). Cancelling the stream ends the iterator.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { iterableStream } from "./source.ts";
 *
 * const stream = iterableStream([new Uint8Array([1]), new Uint8Array([2, 3])]);
 * assert((await new Response(stream).arrayBuffer()).byteLength === 3);
 * ```
 */
export function iterableStream<T>(
  iterable: Iterable<T> | AsyncIterable<T>,
): ReadableStream<T> {
  const iterator = Symbol.asyncIterator in iterable
    ? iterable[Symbol.asyncIterator]()
    : iterable[Symbol.iterator]();
  return new ReadableStream<T>({
    async pull(controller) {
      const { done, value } = await iterator.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await iterator.return?.(reason);
    },
  }, { highWaterMark: 0 });
}
