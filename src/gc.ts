/**
 * Garbage collection of blobs that nothing refers to.
 *
 * @module
 */

import type { Backend } from "./backend.ts";
import type { BlobRef, Catalog, UploadRecord } from "./catalog.ts";
import type { Refs } from "./refs.ts";

/**
 * Statistics on the blobs a garbage collection kept among those it
 * examined (every blob put at or before its cut-off).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BlobStats } from "@blobstore/blobstore";
 *
 * const stats: BlobStats = { count: 2, maxSize: 10, meanSize: 7 };
 * assert(stats.meanSize <= stats.maxSize);
 * ```
 */
export interface BlobStats {
  /** How many blobs were kept. */
  count: number;
  /** The size of the largest kept blob in bytes (0 when none). */
  maxSize: number;
  /** The mean size of the kept blobs in bytes, rounded down (0 when none). */
  meanSize: number;
}

/**
 * How many unreferenced references GC removes per batch. Large, because on
 * some servers (FerretDB v1) each batch costs a scan of whole collections
 * whatever its size; 10,000 references still make requests of about 1 MB
 * and hold a few MB in memory.
 */
const REMOVE_BATCH = 10_000;

/**
 * Options of {@linkcode runGarbageCollection}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { GcOptions } from "./gc.ts";
 *
 * const options: GcOptions = { dryRun: true, onRemove: (ref) => console.log(ref.hash) };
 * assert(options.dryRun);
 * ```
 */
export interface GcOptions {
  /** Finds and counts the garbage as a real run would, removing nothing. */
  dryRun?: boolean;
  /**
   * Upload records to treat as gone: the parts and blob they hold are not
   * kept for them. A dry run passes the records a real run would have
   * removed first (released, expired).
   */
  ignoreUpload?: (upload: UploadRecord) => boolean;
  /**
   * Called with each reference this run removed (in a dry run, each one a
   * real run would remove), once its removal is settled.
   */
  onRemove?: (ref: BlobRef) => void;
}

/**
 * What a garbage collection did: what it kept and what it removed.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { GcReport } from "./gc.ts";
 *
 * const report: GcReport = {
 *   kept: { count: 1, maxSize: 10, meanSize: 10 },
 *   removed: 2,
 *   removedBytes: 30,
 * };
 * assert(report.removed >= 0);
 * ```
 */
export interface GcReport {
  /** Statistics on the blobs kept. */
  kept: BlobStats;
  /**
   * How many blobs were removed (in a dry run, would be): counted one by
   * one as their references go, so never negative, and blobs put meanwhile
   * never count. See {@linkcode runGarbageCollection} for the one overlap.
   */
  removed: number;
  /** The total size of those blobs in bytes. */
  removedBytes: number;
}

/**
 * Deletes every blob put at or before `before` whose hash is not in `refs`
 * nor held by an upload record, and returns statistics on the blobs kept.
 * The same as {@linkcode runGarbageCollection}, reporting only what it kept.
 *
 * `before` must be in the past (a little before the caller gathered
 * `refs`): a blob put after the cut-off is never touched.
 */
export async function collectGarbage(
  catalog: Catalog,
  backend: Backend,
  refs: Refs,
  before: Date,
): Promise<BlobStats> {
  return (await runGarbageCollection(catalog, backend, refs, before)).kept;
}

/**
 * Deletes every blob put at or before `before` whose hash is not in `refs`
 * nor held by an upload record, and reports what it kept and what it
 * removed. With `dryRun` it finds the same garbage and removes nothing.
 *
 * Why it is safe against concurrent puts:
 * - Upload records are read first, and a part record is created before its
 *   bytes are put, so any part an upload holds is known by then; a part
 *   begun later puts (or refreshes) its blob with a put time after `before`
 *   whenever `before` is in the past.
 * - A reference is removed only if its put time is still the one read, so a
 *   put that refreshed it meanwhile wins; the bytes go only once the
 *   reference is gone, so no reference ever names missing bytes.
 *
 * With a catalog that has `removeRefs`, unreferenced references are removed
 * in batches of 10,000 (one or two round trips each rather than one per
 * reference), and then the bytes of the ones that are gone, through the
 * backend's `removeMany` when it has one; the order above holds per batch.
 *
 * How removals are counted: one per reference this run saw go, as it goes.
 * Through `removeRef`, exactly the references this run removed. Through
 * `removeRefs`, the references reported gone for good, which also takes in
 * one that another collection running at the same moment removed first
 * (the batch cannot tell the two apart; its bytes are removed all the
 * same): then both collections count it. Puts never lower the count (a
 * refreshed reference stays and is counted as kept), so it is never
 * negative and never counts a blob still there.
 *
 * `before` must be in the past (a little before the caller gathered
 * `refs`): a blob put after the cut-off is never touched. `refs` is not
 * changed.
 */
export async function runGarbageCollection(
  catalog: Catalog,
  backend: Backend,
  refs: Refs,
  before: Date,
  options: GcOptions = {},
): Promise<GcReport> {
  const { dryRun = false, ignoreUpload, onRemove } = options;
  const held = new Set<string>();
  for await (const upload of catalog.uploads()) {
    if (ignoreUpload?.(upload)) continue;
    for (const part of upload.parts) if (part) held.add(part.hash);
    if (upload.hash !== undefined) held.add(upload.hash);
  }
  let count = 0;
  let total = 0;
  let maxSize = 0;
  const keep = (ref: BlobRef) => {
    count++;
    total += ref.size;
    maxSize = Math.max(maxSize, ref.size);
  };
  let removed = 0;
  let removedBytes = 0;
  const removedOne = (ref: BlobRef) => {
    removed++;
    removedBytes += ref.size;
    onRemove?.(ref);
  };
  let garbage: BlobRef[] = [];
  const removeGarbage = async () => {
    const gone = await catalog.removeRefs!(garbage);
    // A reference that stays had its put time moved: a put refreshed it
    // during the collection.
    for (const ref of garbage) if (!gone.has(ref.hash)) keep(ref);
    const goneRefs = garbage.filter((ref) => gone.has(ref.hash));
    garbage = [];
    await removeBytes(backend, goneRefs.map((ref) => ref.name));
    for (const ref of goneRefs) removedOne(ref);
  };
  for await (const ref of catalog.refsPutBefore(before)) {
    if (refs.has(ref.hash) || held.has(ref.hash)) {
      keep(ref);
    } else if (dryRun) {
      removedOne(ref);
    } else if (catalog.removeRefs) {
      garbage.push(ref);
      if (garbage.length >= REMOVE_BATCH) await removeGarbage();
    } else if (await catalog.removeRef(ref.hash, ref.putTime)) {
      await backend.remove(ref.name);
      removedOne(ref);
    } else {
      // Its put time moved: a put refreshed it during the collection.
      keep(ref);
    }
  }
  if (garbage.length > 0) await removeGarbage();
  return {
    kept: { count, maxSize, meanSize: count ? Math.floor(total / count) : 0 },
    removed,
    removedBytes,
  };
}

/** Removes the objects `names`, in one batch when the backend can. */
async function removeBytes(backend: Backend, names: string[]): Promise<void> {
  if (names.length === 0) return;
  if (backend.removeMany) return await backend.removeMany(names);
  for (const name of names) await backend.remove(name);
}
