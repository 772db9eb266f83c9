/**
 * The bound of every verified put: SHA-384 alone on this CPU, measured in
 * the same run. A put verifies every byte, so it can go no faster than the
 * slower of the bare transfer and the hash (when they overlap perfectly on
 * two cores), and no faster than both in turn when they share one core.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { BenchCase, BenchRow } from "./harness.ts";
import { chunksOf } from "./data.ts";

/** The SHA-384 speed measured by {@linkcode hashAloneCase}, in MB/s. */
export const hashSpeed = { MBs: 0 };

/**
 * `node:crypto` SHA-384 over 64 KiB chunks, alone: its row records the
 * speed later rows' notes compare with.
 *
 * @example
 * ```ts ignore
 * import { hashAloneCase } from "./bound.ts";
 * import { runCase } from "./harness.ts";
 *
 * console.log(await runCase(hashAloneCase(64 * 2 ** 20), 3));
 * ```
 */
export function hashAloneCase(size: number): BenchCase {
  return {
    name: "node:crypto SHA-384 alone, 64 KiB chunks (bounds verified puts)",
    size,
    ours() {
      const hash = createHash("sha384");
      for (const chunk of chunksOf(size)) hash.update(chunk);
      hash.digest("hex");
      return Promise.resolve();
    },
    note(row: BenchRow) {
      hashSpeed.MBs = row.ours;
      return undefined;
    },
  };
}

/**
 * A note for a verified put's row: its bare baseline and the SHA-384 speed
 * combined, as an overlapped bound `min(bare, hash)` and a serial one
 * `1 / (1/bare + 1/hash)`, and how close ours is to each.
 *
 * @example
 * ```ts ignore
 * import { putBoundNote } from "./bound.ts";
 *
 * const note = putBoundNote({ case: "put", size: 1, ours: 300, baseline: 600, ratio: 0.5, target: 0.9, met: false, peakRssGrowthMiB: 5, unit: "MB/s" });
 * ```
 */
export function putBoundNote(row: BenchRow): string | undefined {
  if (!hashSpeed.MBs || row.baseline === null) return undefined;
  const overlapped = Math.min(row.baseline, hashSpeed.MBs);
  const serial = 1 / (1 / row.baseline + 1 / hashSpeed.MBs);
  return `${row.case}: bare ${row.baseline} MB/s, SHA-384 ${hashSpeed.MBs} MB/s → bound ${
    Math.round(overlapped)
  } MB/s overlapped, ${
    Math.round(serial)
  } MB/s serial; ours ${row.ours} MB/s = ${
    (row.ours / overlapped).toFixed(2)
  } of the overlapped bound, ${
    (row.ours / serial).toFixed(2)
  } of the serial one`;
}
