/**
 * Reading byte ranges out of Swift's answers: the blob's whole size from a
 * partial answer, and the range cut out of a whole one when a server
 * ignored the `Range` header.
 *
 * @module
 */

import { SwiftError } from "./error.ts";

/**
 * The whole size from `Content-Range: bytes a-b/size` or `bytes *\/size`;
 * a {@linkcode SwiftError} when the header does not tell it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { totalFromContentRange } from "./ranges.ts";
 *
 * const res = new Response(null, { status: 206, headers: { "Content-Range": "bytes 0-9/100" } });
 * assert(totalFromContentRange(res, "GET object \"x\"") === 100);
 * ```
 */
export function totalFromContentRange(
  res: Response,
  operation: string,
): number {
  const header = res.headers.get("Content-Range") ?? "";
  const size = Number(/\/(\d+)\s*$/.exec(header)?.[1]);
  if (!Number.isSafeInteger(size)) {
    throw new SwiftError(
      operation,
      res.status,
      `expected a Content-Range with the size, got "${header}"`,
    );
  }
  return size;
}

/**
 * Passes on only the bytes at offsets `[start, end)` of the stream.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sliceStream } from "./ranges.ts";
 *
 * const sliced = new Blob(["abcdef"]).stream().pipeThrough(sliceStream(1, 4));
 * assert(await new Response(sliced).text() === "bcd");
 * ```
 */
export function sliceStream(
  start: number,
  end: number,
): TransformStream<Uint8Array, Uint8Array> {
  let offset = 0;
  return new TransformStream({
    transform(chunk, controller) {
      const from = Math.max(start - offset, 0);
      const to = Math.min(end - offset, chunk.byteLength);
      offset += chunk.byteLength;
      if (to > from) controller.enqueue(chunk.subarray(from, to));
    },
  });
}
