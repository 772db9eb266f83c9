/**
 * Reading byte ranges out of Swift's answers: the blob's whole size from a
 * partial answer, as a {@linkcode SwiftError} when Swift does not tell it.
 *
 * @module
 */

import { sizeFromContentRange } from "../range.ts";
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
  const header = res.headers.get("Content-Range");
  const size = sizeFromContentRange(header);
  if (size === undefined) {
    throw new SwiftError(
      operation,
      res.status,
      `expected a Content-Range with the size, got "${header ?? ""}"`,
    );
  }
  return size;
}
