/**
 * Garbage collection of blobs that nothing refers to.
 *
 * @module
 */

import type { Backend } from "./backend.ts";
import type { BlobRef, Catalog } from "./catalog.ts";
import type { Refs } from "./refs.ts";

/**
 * Statistics on the blobs a garbage collection kept among those it
 * examined (every blob put at or before its cut-off).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BlobStats } from "./gc.ts";
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
 * Deletes every blob put at or before `before` whose hash is not in `refs`
 * nor held by an upload record, and returns statistics on the blobs kept.
 *
 * Why it is safe against concurrent puts:
 * - Upload records are read first, and a part record is created before its
 *   bytes are put, so any part an upload holds is in `refs` by then; a part
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
 * `before` must be in the past (a little before the caller gathered
 * `refs`): a blob put after the cut-off is never touched.
 */
export async function collectGarbage(
  catalog: Catalog,
  backend: Backend,
  refs: Refs,
  before: Date,
): Promise<BlobStats> {
  for await (const upload of catalog.uploads()) {
    for (const part of upload.parts) if (part) refs.add(part.hash);
    if (upload.hash !== undefined) refs.add(upload.hash);
  }
  let count = 0;
  let total = 0;
  let maxSize = 0;
  const keep = (ref: BlobRef) => {
    count++;
    total += ref.size;
    maxSize = Math.max(maxSize, ref.size);
  };
  let garbage: BlobRef[] = [];
  const removeGarbage = async () => {
    const gone = await catalog.removeRefs!(garbage);
    // A reference that stays had its put time moved: a put refreshed it
    // during the collection.
    for (const ref of garbage) if (!gone.has(ref.hash)) keep(ref);
    await removeBytes(
      backend,
      garbage.filter((ref) => gone.has(ref.hash)).map((ref) => ref.name),
    );
    garbage = [];
  };
  for await (const ref of catalog.refsPutBefore(before)) {
    if (refs.has(ref.hash)) {
      keep(ref);
    } else if (catalog.removeRefs) {
      garbage.push(ref);
      if (garbage.length >= REMOVE_BATCH) await removeGarbage();
    } else if (await catalog.removeRef(ref.hash, ref.putTime)) {
      await backend.remove(ref.name);
    } else {
      // Its put time moved: a put refreshed it during the collection.
      keep(ref);
    }
  }
  if (garbage.length > 0) await removeGarbage();
  return { count, maxSize, meanSize: count ? Math.floor(total / count) : 0 };
}

/** Removes the objects `names`, in one batch when the backend can. */
async function removeBytes(backend: Backend, names: string[]): Promise<void> {
  if (names.length === 0) return;
  if (backend.removeMany) return await backend.removeMany(names);
  for (const name of names) await backend.remove(name);
}
