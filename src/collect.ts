/**
 * The one garbage collection entry point: everything that frees storage,
 * in the order that keeps it safe, for the CLI's `gc` and for a server.
 *
 * @module
 */

import type { BlobRef } from "./catalog.ts";
import { BadParamsError } from "./errors.ts";
import { type BlobStats, runGarbageCollection } from "./gc.ts";
import type { Refs } from "./refs.ts";
import type { Store } from "./store.ts";
import { DEFAULT_GRACE_MS, sweepOrphans, type SweepStats } from "./sweep.ts";

/**
 * The multipart blobs a collection may release: a blob made of the parts
 * of a finished upload, served by its whole hash while a registry entry
 * (hash → upload id) and the upload record hold it. The HTTP service's
 * `MultipartBlobs` is one: `entries` are its registry's, `release` its own.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { MultipartReleaser } from "@blobstore/blobstore";
 *
 * const none: MultipartReleaser = {
 *   async *entries() {},
 *   release: () => Promise.resolve(false),
 * };
 * assert(typeof none.release === "function");
 * ```
 */
export interface MultipartReleaser {
  /** Every registered multipart blob: its hash, upload and finish time. */
  entries(): AsyncIterable<{ hash: string; uploadId: string; finished: Date }>;
  /**
   * Stops serving `hash` from upload `uploadId`: removes the upload record
   * (its parts become garbage), then the entry. Returns whether this call
   * dropped the entry.
   */
  release(hash: string, uploadId: string): Promise<boolean>;
}

/**
 * Options of {@linkcode collect}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { type CollectOptions, Refs } from "@blobstore/blobstore";
 *
 * const options: CollectOptions = {
 *   keep: new Refs(),
 *   before: new Date(Date.now() - 24 * 3600_000),
 *   dryRun: true,
 * };
 * assert(options.dryRun);
 * ```
 */
export interface CollectOptions {
  /**
   * The hashes of the blobs to keep. With `before`, blobs neither kept nor
   * held by an upload record are collected; without both, no blob is (only
   * expired uploads are removed, and the sweeps run).
   */
  keep?: Refs;
  /**
   * The cut-off: only blobs put, and multipart blobs finished, at or before
   * it are collected. It must be in the past, a little before `keep` was
   * gathered, so that blobs put meanwhile are spared. Given with `keep`.
   */
  before?: Date;
  /**
   * The multipart blobs to release when neither kept nor finished after
   * `before` (their parts are collected in the same run).
   */
  multipart?: MultipartReleaser;
  /**
   * The least age, in milliseconds, of a backend object the orphan sweep
   * removes (at least `now - before` as well), and the grace period of the
   * backend's own `sweep` when given (else the backend's own default).
   * Default: {@linkcode DEFAULT_GRACE_MS}.
   */
  graceMs?: number;
  /**
   * Whether to sweep the backend: its debris (`Backend.sweep`) and the
   * orphans no reference names (`sweepOrphans`, when it can list).
   * Default: true.
   */
  sweep?: boolean;
  /**
   * Finds and counts what a real run would remove, and changes nothing.
   * Backend debris is then not counted (no seam tells it without clearing
   * it).
   */
  dryRun?: boolean;
  /** The time of the run (default: now): uploads expired before it go. */
  now?: Date;
  /**
   * Called with each blob reference removed (in a dry run, each one that a
   * real run would remove), as it goes.
   */
  onRemove?: (ref: BlobRef) => void;
}

/**
 * What {@linkcode collect} did (with `dryRun`, would do). Every count is
 * one thing this run removed, counted as it went: never negative, whatever
 * runs beside it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { CollectResult } from "@blobstore/blobstore";
 *
 * const result: CollectResult = {
 *   dryRun: false,
 *   released: 0,
 *   removed: 2,
 *   removedBytes: 30,
 *   kept: { count: 1, maxSize: 10, meanSize: 10 },
 * };
 * assert(result.removed >= 0);
 * ```
 */
export interface CollectResult {
  /** Whether this was a dry run, which changed nothing. */
  dryRun: boolean;
  /** How many multipart blobs were released. */
  released: number;
  /**
   * How many blobs GC removed. With a catalog that removes in batches
   * (`Catalog.removeRefs`), a blob that a second collection running at the
   * same moment removed too may be counted by both (see
   * `runGarbageCollection`).
   */
  removed: number;
  /** Their total size in bytes. */
  removedBytes: number;
  /** Statistics on the blobs GC kept; absent when no blob was collected. */
  kept?: BlobStats;
  /**
   * How many leftovers of killed puts the backend's `sweep` cleared; absent
   * when it has none, in a dry run, or when not sweeping.
   */
  debris?: number;
  /**
   * What the orphan sweep removed; absent when the backend cannot list its
   * objects or when not sweeping.
   */
  swept?: SweepStats;
}

/**
 * Frees what nothing needs any more, in this order:
 *
 * 1. releases the multipart blobs of `multipart` neither in `keep` nor
 *    finished after `before` (their upload records go, so their parts
 *    become garbage);
 * 2. removes the upload records expired before `now`;
 * 3. collects every blob put at or before `before` that neither `keep` nor
 *    an upload record holds (`Store.gc`);
 * 4. has the backend clear the debris of puts killed midway, older than
 *    the grace period (`Backend.sweep`, when it has one);
 * 5. removes the backend objects no reference names that are older than
 *    both `now - before` and the grace period (`sweepOrphans`, when the
 *    backend can list).
 *
 * Steps 1 and 3 run only given `keep` and `before`; 4 and 5 unless `sweep`
 * is false. With `dryRun` nothing changes: the same rules find what each
 * step would remove, treating the upload records steps 1 and 2 would
 * remove as gone, and the result (and `onRemove`) report it.
 *
 * Every count is of what this run removed, one by one as it went, so it is
 * never negative and puts running beside it never change it.
 *
 * @example Collect what is not kept, after a dry run
 * ```ts
 * import assert from "node:assert";
 * import { collect, MemoryBackend, MemoryCatalog, Refs, sha384, Store } from "@blobstore/blobstore";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const keep = new Refs();
 * for (const text of ["keep me", "drop me"]) {
 *   const bytes = new TextEncoder().encode(text);
 *   const hash = await sha384(bytes);
 *   await store.put(bytes, hash, bytes.length);
 *   if (text === "keep me") keep.add(hash);
 * }
 * const before = new Date();
 *
 * const dry = await collect(store, { keep, before, dryRun: true });
 * assert(dry.removed === 1 && dry.kept?.count === 1);
 * const real = await collect(store, { keep, before });
 * assert(real.removed === 1 && real.removedBytes === 7);
 * assert((await collect(store, { keep, before })).removed === 0);
 * ```
 */
export async function collect(
  store: Store,
  options: CollectOptions = {},
): Promise<CollectResult> {
  const { keep, before, multipart, onRemove } = options;
  const now = options.now ?? new Date();
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const dryRun = options.dryRun === true;
  checkOptions(options, now, graceMs);
  const { catalog, backend } = store;
  const result: CollectResult = {
    dryRun,
    released: 0,
    removed: 0,
    removedBytes: 0,
  };

  const toRelease = keep && before && multipart
    ? await multipartToRelease(multipart, keep, before)
    : [];
  if (dryRun) {
    result.released = toRelease.length;
  } else {
    for (const { hash, uploadId } of toRelease) {
      if (await multipart!.release(hash, uploadId)) result.released++;
    }
    await store.removeExpiredUploads(now);
  }

  if (keep && before) {
    const releasedIds = new Set(toRelease.map((entry) => entry.uploadId));
    const report = await runGarbageCollection(catalog, backend, keep, before, {
      dryRun,
      onRemove,
      // What steps 1 and 2 would have removed, in a dry run.
      ignoreUpload: dryRun
        ? (upload) =>
          releasedIds.has(upload.id) ||
          upload.expires.getTime() < now.getTime()
        : undefined,
    });
    result.kept = report.kept;
    result.removed = report.removed;
    result.removedBytes = report.removedBytes;
  }

  if (options.sweep !== false) {
    // Leftovers of puts killed midway, which no listing shows.
    if (backend.sweep && !dryRun) {
      result.debris = await backend.sweep(options.graceMs);
    }
    // Leftovers of puts that crashed between writing their bytes and
    // recording them: GC walks references and never sees them. The grace
    // period spares puts still running.
    if (backend.list) {
      const olderThan = Math.max(
        before ? now.getTime() - before.getTime() : 0,
        graceMs,
      );
      result.swept = await sweepOrphans(catalog, backend, olderThan, now, {
        dryRun,
      });
    }
  }
  return result;
}

function checkOptions(options: CollectOptions, now: Date, graceMs: number) {
  const { keep, before } = options;
  if ((keep === undefined) !== (before === undefined)) {
    throw new BadParamsError(
      "collect needs both keep and before to collect blobs, or neither",
    );
  }
  for (const [what, date] of [["now", now], ["before", before]] as const) {
    if (
      date !== undefined &&
      (!(date instanceof Date) || Number.isNaN(date.getTime()))
    ) {
      throw new BadParamsError(`invalid ${what} (expected a valid Date)`);
    }
  }
  if (!Number.isFinite(graceMs) || graceMs < 0) {
    throw new BadParamsError(
      `invalid grace period (expected milliseconds >= 0, got ${graceMs})`,
    );
  }
}

/** The registered multipart blobs neither kept nor finished after `before`. */
async function multipartToRelease(
  multipart: MultipartReleaser,
  keep: Refs,
  before: Date,
): Promise<{ hash: string; uploadId: string }[]> {
  const found = [];
  for await (const entry of multipart.entries()) {
    if (keep.has(entry.hash) || entry.finished.getTime() > before.getTime()) {
      continue;
    }
    found.push({ hash: entry.hash, uploadId: entry.uploadId });
  }
  return found;
}
