/**
 * Sizes and durations as people write and read them.
 *
 * @module
 */

import { UsageError } from "./args.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/**
 * Formats a byte count with a binary unit: `512 B`, `1.5 MiB`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { formatBytes } from "./format.ts";
 *
 * assert(formatBytes(512) === "512 B");
 * assert(formatBytes(1.5 * 2 ** 20) === "1.5 MiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/**
 * Formats seconds as `m:ss` or `h:mm:ss`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { formatClock } from "./format.ts";
 *
 * assert(formatClock(65) === "1:05");
 * assert(formatClock(3723) === "1:02:03");
 * ```
 */
export function formatClock(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/**
 * Parses a size: a byte count with an optional binary suffix, `k`, `m`,
 * `g` or `t`, optionally followed by `iB` or `B` (`5M`, `5MiB`, `5mb` are
 * all 5 × 2^20).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseSize } from "./format.ts";
 *
 * assert(parseSize("5MiB") === 5 * 2 ** 20);
 * assert(parseSize("1024") === 1024);
 * ```
 */
export function parseSize(text: string): number {
  const match = text.trim().match(/^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i);
  if (!match) {
    throw new UsageError(
      `invalid size ${
        JSON.stringify(text)
      } (expected a byte count like 5242880, 5M or 5MiB)`,
    );
  }
  const power = " kmgt".indexOf(match[2].toLowerCase() || " ");
  const bytes = Math.round(Number(match[1]) * 1024 ** power);
  if (!Number.isSafeInteger(bytes)) {
    throw new UsageError(`size ${JSON.stringify(text)} is too large`);
  }
  return bytes;
}

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parses a duration in milliseconds from terms like `90s`, `30m`, `24h`,
 * `7d`, `2w` or `1h30m`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseDuration } from "./format.ts";
 *
 * assert(parseDuration("1h30m") === 90 * 60_000);
 * assert(parseDuration("7d") === 7 * 86_400_000);
 * ```
 */
export function parseDuration(text: string): number {
  const trimmed = text.trim();
  const terms = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)];
  if (terms.length === 0 || terms.map((t) => t[0]).join("") !== trimmed) {
    throw new UsageError(
      `invalid duration ${
        JSON.stringify(text)
      } (expected terms like 90s, 30m, 24h, 7d or 1h30m)`,
    );
  }
  return terms.reduce(
    (sum, [, value, unit]) => sum + Number(value) * DURATION_UNITS[unit],
    0,
  );
}
