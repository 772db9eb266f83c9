/**
 * The HTTP `Range` header: one byte range per request (RFC 9110 §14).
 * Several ranges in one request are answered with the whole blob, which
 * the RFC allows, rather than with a multipart/byteranges body. The range
 * itself is parsed and resolved by the core (`src/range.ts`), as the
 * command line's are.
 *
 * @module
 */

import { parseRangeSpec, type RangeSpec } from "../range.ts";

/**
 * Parses a `Range` header. Returns `undefined` for anything that is not a
 * single well-formed byte range, which the caller then ignores (serving
 * the whole blob with 200, as RFC 9110 allows).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseRangeHeader } from "./range.ts";
 *
 * assert(parseRangeHeader("bytes=10-19")?.last === 19);
 * assert(parseRangeHeader("bytes=-5")?.suffix === 5);
 * assert(parseRangeHeader("bytes=0-1,5-6") === undefined);
 * ```
 */
export function parseRangeHeader(
  header: string | null,
): RangeSpec | undefined {
  const match = header?.trim().match(/^bytes\s*=(.*)$/i);
  return match ? parseRangeSpec(match[1]) : undefined;
}
