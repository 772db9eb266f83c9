/**
 * The HTTP `Range` header: one byte range per request (RFC 9110 §14).
 * Several ranges in one request are answered with the whole blob, which
 * the RFC allows, rather than with a multipart/byteranges body.
 *
 * @module
 */

/**
 * A range as the client wrote it: `first` to `last` inclusive (`last`
 * omitted: to the end), or the last `suffix` bytes.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { RangeSpec } from "./range.ts";
 *
 * const spec: RangeSpec = { first: 0, last: 99 };
 * assert(spec.first === 0);
 * ```
 */
export type RangeSpec =
  | { first: number; last?: number; suffix?: undefined }
  | { suffix: number; first?: undefined; last?: undefined };

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
  const match = header?.trim().match(/^bytes\s*=\s*(\d*)\s*-\s*(\d*)$/i);
  if (!match) return undefined;
  const [, first, last] = match;
  if (first === "" && last === "") return undefined;
  if (first === "") return { suffix: toInt(last) };
  const spec = {
    first: toInt(first),
    last: last === "" ? undefined : toInt(last),
  };
  if (spec.last !== undefined && spec.last < spec.first) return undefined;
  if (!Number.isSafeInteger(spec.first)) return undefined;
  return spec;
}

/**
 * Resolves a range against a blob of `size` bytes into `[start, end)`, or
 * `undefined` when it is unsatisfiable (it starts at or past the end, or is
 * an empty suffix): the caller answers 416.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { resolveRangeSpec } from "./range.ts";
 *
 * assert(resolveRangeSpec({ first: 5, last: 99 }, 10)?.end === 10);
 * assert(resolveRangeSpec({ suffix: 3 }, 10)?.start === 7);
 * assert(resolveRangeSpec({ first: 10 }, 10) === undefined);
 * ```
 */
export function resolveRangeSpec(
  spec: RangeSpec,
  size: number,
): { start: number; end: number } | undefined {
  if (spec.suffix !== undefined) {
    if (spec.suffix === 0 || size === 0) return undefined;
    return { start: Math.max(size - spec.suffix, 0), end: size };
  }
  if (spec.first >= size) return undefined;
  const end = spec.last === undefined ? size : Math.min(spec.last + 1, size);
  return { start: spec.first, end };
}

function toInt(digits: string): number {
  const value = Number(digits);
  return Number.isSafeInteger(value) ? value : Number.MAX_SAFE_INTEGER;
}
