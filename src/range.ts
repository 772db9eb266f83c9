/**
 * Byte ranges, in one place: the `[start, end)` bounds the store and the
 * backends read, and the `first-last`, `first-` and `-suffix` forms of RFC
 * 9110 §14.1.1 that the HTTP service (in a `Range` header) and the command
 * line (`get --range`) accept, resolved against a blob's size.
 *
 * @module
 */

import type { ByteRange } from "./backend.ts";
import { BadParamsError } from "./errors.ts";

/**
 * Resolves `range` against a blob of `size` bytes into concrete
 * `[start, end)` bounds, clamped to the blob (so `start <= end <= size`).
 * Negative or non-integer bounds are a `BadParamsError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { resolveRange } from "./range.ts";
 *
 * assert(resolveRange({ start: 2 }, 10).end === 10);
 * assert(resolveRange({ start: 8, end: 99 }, 10).end === 10);
 * assert(resolveRange(undefined, 10).start === 0);
 * ```
 */
export function resolveRange(
  range: ByteRange | undefined,
  size: number,
): { start: number; end: number } {
  const start = range?.start ?? 0;
  const end = range?.end ?? size;
  for (const [what, value] of [["start", start], ["end", end]] as const) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new BadParamsError(
        `invalid range ${what} (expected a non-negative integer, got ${value})`,
      );
    }
  }
  const clampedEnd = Math.min(end, size);
  return { start: Math.min(start, clampedEnd), end: clampedEnd };
}

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
 * Parses one range in the RFC 9110 form `first-last`, `first-` or
 * `-suffix` (byte positions, `last` inclusive; spaces around the dash
 * allowed). Returns `undefined` for anything else, or for `last < first`.
 * A position too large to count exactly is read as the largest safe
 * integer, which resolves like any position past the end.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseRangeSpec } from "./range.ts";
 *
 * assert(parseRangeSpec("10-19")?.last === 19);
 * assert(parseRangeSpec("-5")?.suffix === 5);
 * assert(parseRangeSpec("7-3") === undefined);
 * ```
 */
export function parseRangeSpec(text: string): RangeSpec | undefined {
  const match = text.trim().match(/^(\d*)\s*-\s*(\d*)$/);
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

/**
 * The whole size an answer to a ranged GET gives in its `Content-Range`
 * (`bytes a-b/size` or `bytes *\/size`), or `undefined` when it does not
 * tell it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sizeFromContentRange } from "./range.ts";
 *
 * assert.strictEqual(sizeFromContentRange("bytes 0-9/100"), 100);
 * assert.strictEqual(sizeFromContentRange("bytes *\/7"), 7);
 * assert.strictEqual(sizeFromContentRange("bytes 0-9/*"), undefined);
 * ```
 */
export function sizeFromContentRange(
  header: string | null,
): number | undefined {
  const size = Number(/\/(\d+)\s*$/.exec(header ?? "")?.[1]);
  return Number.isSafeInteger(size) ? size : undefined;
}

/**
 * Passes on only the bytes at offsets `[start, end)` of the stream: the
 * range cut out of a whole answer, when a server ignored `Range`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sliceStream } from "./range.ts";
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

/**
 * How to ask a storage service over HTTP for `range` of an object whose
 * size is not known yet: the bounds (validated as {@linkcode resolveRange}
 * does), whether the range is empty whatever the size (then only the size
 * is worth asking), and the `Range` header to send (none for the whole
 * object). An answer of 200 to a request that had a header means the
 * server ignored it: cut the range out with {@linkcode sliceStream}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { rangeRequest } from "./range.ts";
 *
 * assert.strictEqual(rangeRequest({ start: 10, end: 20 }).header, "bytes=10-19");
 * assert.strictEqual(rangeRequest({ start: 10 }).header, "bytes=10-");
 * assert.strictEqual(rangeRequest().header, undefined);
 * assert(rangeRequest({ start: 5, end: 5 }).empty);
 * ```
 */
export function rangeRequest(range?: ByteRange): {
  start: number;
  end: number;
  empty: boolean;
  header?: string;
} {
  const { start, end } = resolveRange(range, Number.MAX_SAFE_INTEGER);
  const openEnded = range?.end === undefined;
  return {
    start,
    end,
    empty: !openEnded && end <= start,
    header: start > 0 || !openEnded
      ? `bytes=${start}-${openEnded ? "" : end - 1}`
      : undefined,
  };
}
