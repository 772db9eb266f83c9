/**
 * Byte-range arithmetic shared by the backends and the store.
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
