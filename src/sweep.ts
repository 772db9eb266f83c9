/**
 * The orphan sweep: removing backend objects that no reference names.
 *
 * @module
 */

import type { Backend, BackendObject } from "./backend.ts";
import type { Catalog } from "./catalog.ts";
import { BadParamsError } from "./errors.ts";
import { hashOfBlobName } from "./names.ts";

/**
 * The grace period, in milliseconds, of everything that clears what a put
 * may still be writing: one hour, far longer than any put takes. The orphan
 * sweep of `collect` spares backend objects younger than this, and
 * the backends' own `sweep` (and their `graceMs` option) default to it for
 * the leftovers of puts killed midway.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { DEFAULT_GRACE_MS } from "@blobstore/blobstore";
 *
 * assert(DEFAULT_GRACE_MS === 60 * 60 * 1000);
 * ```
 */
export const DEFAULT_GRACE_MS = 60 * 60 * 1000;

/**
 * Options of {@linkcode sweepOrphans} beyond its grace period.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SweepOptions } from "@blobstore/blobstore";
 *
 * const options: SweepOptions = { dryRun: true };
 * assert(options.dryRun);
 * ```
 */
export interface SweepOptions {
  /** Counts the orphans as if removed, removing nothing. */
  dryRun?: boolean;
  /** Called with each orphan removed (in a dry run, each one that would be). */
  onRemove?: (object: BackendObject) => void;
}

/**
 * What an orphan sweep did.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SweepStats } from "@blobstore/blobstore";
 *
 * const stats: SweepStats = { examined: 3, removed: 1, removedBytes: 10 };
 * assert(stats.removed <= stats.examined);
 * ```
 */
export interface SweepStats {
  /** How many backend objects were listed. */
  examined: number;
  /** How many orphans were removed. */
  removed: number;
  /** Their total size in bytes. */
  removedBytes: number;
}

/**
 * Removes every backend object that is older than `olderThan` milliseconds
 * and that no reference names.
 *
 * A put writes its bytes first and records the reference after, so a crash
 * between the two leaves an object nothing names, which GC (walking
 * references) never finds. The grace period is what keeps this safe: an
 * object written less than `olderThan` ago may belong to a put that is about
 * to record it, so it is left alone; pick a period far longer than any put
 * takes (an hour is a good default). Objects whose name the store did not
 * make (`<hash>-<random>`) are never touched.
 *
 * `dryRun` counts (and reports to `onRemove`) what would go and removes
 * nothing. `collect` runs this after GC, with a grace period of
 * at least {@linkcode DEFAULT_GRACE_MS}.
 */
export async function sweepOrphans(
  catalog: Catalog,
  backend: Backend,
  olderThan: number,
  now: Date = new Date(),
  options: SweepOptions = {},
): Promise<SweepStats> {
  if (!Number.isFinite(olderThan) || olderThan < 0) {
    throw new BadParamsError(
      `invalid grace period (expected milliseconds >= 0, got ${olderThan})`,
    );
  }
  if (!backend.list) {
    throw new BadParamsError("the backend cannot list its objects");
  }
  const cutoff = now.getTime() - olderThan;
  const stats: SweepStats = { examined: 0, removed: 0, removedBytes: 0 };
  for await (const object of backend.list()) {
    stats.examined++;
    const hash = hashOfBlobName(object.name);
    if (hash === undefined || object.modified.getTime() > cutoff) continue;
    if ((await catalog.getRef(hash))?.name === object.name) continue;
    if (!options.dryRun) await backend.remove(object.name);
    options.onRemove?.(object);
    stats.removed++;
    stats.removedBytes += object.size;
  }
  return stats;
}
