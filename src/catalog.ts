/**
 * The catalog seam: which blobs exist (references) and the state of
 * multipart uploads (upload records).
 *
 * Every method that changes state is one atomic conditional step, so that
 * several stores sharing a catalog (processes, machines) stay correct
 * without locks: the store's algorithms only ever depend on the outcome of
 * one such step at a time, exactly as the Go original does with single
 * MongoDB document updates.
 *
 * @module
 */

/**
 * The record of one stored blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BlobRef } from "@blobstore/blobstore";
 *
 * const ref: BlobRef = { hash: "0".repeat(96), name: "0".repeat(96) + "-01", putTime: new Date(), size: 0 };
 * assert(ref.size === 0);
 * ```
 */
export interface BlobRef {
  /** The blob's SHA-384 hash, lowercase hex: the key. */
  hash: string;
  /** The name of its bytes in the backend. */
  name: string;
  /** When the blob was last put; GC spares blobs put after its cut-off. */
  putTime: Date;
  /** Its size in bytes. */
  size: number;
}

/**
 * The record of one part of a multipart upload. It is created before the
 * part's bytes are put, so a hash named by an in-flight part is always
 * visible to GC.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { PartRecord } from "@blobstore/blobstore";
 *
 * const part: PartRecord = { hash: "0".repeat(96), size: 10, offset: 0, complete: false };
 * assert(!part.complete);
 * ```
 */
export interface PartRecord {
  /** The part's SHA-384 hash; the part is stored as a blob of that hash. */
  hash: string;
  /** Its size in bytes. */
  size: number;
  /** Where it starts in the whole blob. */
  offset: number;
  /** Whether its bytes have been stored and verified. */
  complete: boolean;
}

/**
 * The saved SHA-384 state of an upload's first parts: what hashing parts
 * `0` to `parts - 1`, in order, left behind. `finishUpload` resumes it and
 * reads back only the parts after them, so an upload whose parts arrived in
 * order finishes without reading a byte.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { HashState } from "@blobstore/blobstore";
 *
 * const state: HashState = { parts: 2, state: new Uint8Array(212) };
 * assert(state.parts === 2);
 * ```
 */
export interface HashState {
  /** How many parts, from part 0, the state has hashed. */
  parts: number;
  /** The state itself, as `ResumableSha384.save` returns it. */
  state: Uint8Array;
}

/**
 * The record of one multipart upload.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { UploadRecord } from "@blobstore/blobstore";
 *
 * const upload: UploadRecord = { id: "u1", expires: new Date(), parts: [] };
 * assert(upload.hash === undefined);
 * ```
 */
export interface UploadRecord {
  /** The upload's id. */
  id: string;
  /** The SHA-384 of the whole blob, set once the upload is finished. */
  hash?: string;
  /** When the record may be removed by `removeExpiredUploads`. */
  expires: Date;
  /** The parts by number; `null` for a number not uploaded yet. */
  parts: (PartRecord | null)[];
  /** Who uses the finished upload, set once by `setOwner`. */
  owner?: string;
  /**
   * The running hash of its first complete parts, advanced by
   * `advanceHashState`; absent before any part was folded in.
   */
  hashState?: HashState;
  /**
   * What the upload's creator recorded about it (such as a tus upload's
   * length and metadata), as text; set by `insertUpload`, never changed.
   */
  info?: string;
}

/**
 * What the registry holds for one multipart blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { MultipartEntry } from "@blobstore/blobstore";
 *
 * const entry: MultipartEntry = { uploadId: "u1", finished: new Date() };
 * assert(entry.uploadId === "u1");
 * ```
 */
export interface MultipartEntry {
  /** The finished upload whose record holds the blob's index. */
  uploadId: string;
  /** When the service registered it; `gc --before` spares newer ones. */
  finished: Date;
}

/**
 * A map from the SHA-384 of a multipart blob to the upload that serves it.
 * Every change is one atomic compare-and-set on the upload id, so several
 * service instances sharing a registry agree on one upload per hash.
 *
 * Every catalog has one, as {@linkcode Catalog.multipart}, kept beside its
 * references and upload records: `MemoryMultipartRegistry` (lost with the
 * process), `KvMultipartRegistry` (Deno KV) and `MongoMultipartRegistry`
 * (the collection `<prefix>.multipart`), so that every process or isolate
 * sharing a catalog finds the multipart blobs any of them finished.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryCatalog, type MultipartRegistry } from "@blobstore/blobstore";
 *
 * const registry: MultipartRegistry = new MemoryCatalog().multipart;
 * const hash = "a".repeat(96);
 * assert(await registry.compareAndSet(hash, undefined, { uploadId: "u1", finished: new Date() }));
 * assert((await registry.get(hash))?.uploadId === "u1");
 * ```
 */
export interface MultipartRegistry {
  /** Returns the entry for `hash`, or `undefined`. */
  get(hash: string): Promise<MultipartEntry | undefined>;
  /**
   * Sets the entry for `hash` to `entry` (`undefined`: removes it) only if
   * its current upload id is `expected` (`undefined`: only if absent).
   * Returns whether it was changed.
   */
  compareAndSet(
    hash: string,
    expected: string | undefined,
    entry: MultipartEntry | undefined,
  ): Promise<boolean>;
  /** Yields every entry with its hash, in no particular order. */
  entries(): AsyncIterable<MultipartEntry & { hash: string }>;
}

/**
 * Blob references and upload records. Implementations: `MemoryCatalog`
 * here, `MongoCatalog` and `KvCatalog` in their own subpath exports; the
 * contract suite in `tests/` checks any implementation.
 *
 * Records returned are copies: changing them changes nothing stored.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { type Catalog, MemoryCatalog } from "@blobstore/blobstore";
 *
 * const catalog: Catalog = new MemoryCatalog();
 * assert(await catalog.getRef("0".repeat(96)) === undefined);
 * ```
 */
export interface Catalog {
  /** Returns the reference for `hash`, or `undefined`. */
  getRef(hash: string): Promise<BlobRef | undefined>;
  /**
   * Inserts `ref` unless a reference for its hash exists. Returns `true`
   * when inserted, `false` when another one was there first.
   */
  insertRef(ref: BlobRef): Promise<boolean>;
  /**
   * Sets the put time of the reference for `hash` and returns the updated
   * reference, or `undefined` when there is none.
   */
  touchRef(hash: string, putTime: Date): Promise<BlobRef | undefined>;
  /**
   * Removes the reference for `hash` only if its put time is still exactly
   * `putTime` (so a put that refreshed it meanwhile wins). Returns whether
   * it was removed.
   */
  removeRef(hash: string, putTime: Date): Promise<boolean>;
  /**
   * Optional batch form of {@linkcode Catalog.removeRef}, for GC: removes
   * each reference in `refs` (as read from
   * {@linkcode Catalog.refsPutBefore}, distinct hashes) only if its put time
   * is still exactly `ref.putTime`, in as few round trips as the store
   * allows. Returns the hashes of the references that are gone for good:
   * removed by this call, or found absent or stored under another name
   * (removed by someone else meanwhile, and perhaps put anew), so that the
   * bytes named `ref.name` are referenced no more. Each reference is one
   * conditional step; the batch as a whole need not be atomic.
   */
  removeRefs?(refs: readonly BlobRef[]): Promise<Set<string>>;
  /** Yields every reference put at or before `before`. */
  refsPutBefore(before: Date): AsyncIterable<BlobRef>;

  /** Inserts a new upload record; its id is fresh. */
  insertUpload(upload: UploadRecord): Promise<void>;
  /** Returns the upload record `id`, or `undefined`. */
  getUpload(id: string): Promise<UploadRecord | undefined>;
  /** Yields every upload record (GC keeps the hashes they hold). */
  uploads(): AsyncIterable<UploadRecord>;
  /**
   * Sets part `part` of upload `id` to `record` only while the upload is
   * unfinished and that part is absent (`null` or beyond the end; the parts
   * list grows with `null`s as needed) or incomplete: only a completed part
   * is final, so a part whose put failed (or was refused for bad content)
   * can be sent again, with another hash if need be. A put of the replaced
   * record still in flight then fails at `completePart`. Returns whether it
   * was set.
   */
  initPart(id: string, part: number, record: PartRecord): Promise<boolean>;
  /**
   * Marks part `part` of upload `id` complete if its hash is `hash`.
   * Returns whether such a part was found.
   */
  completePart(id: string, part: number, hash: string): Promise<boolean>;
  /**
   * Sets the final hash of upload `id` only if it has none yet. Returns
   * whether it was set.
   */
  setUploadHash(id: string, hash: string): Promise<boolean>;
  /**
   * Sets the owner and expiry of upload `id` only if it is finished and
   * either unowned or already owned by `owner`. Returns whether it was set.
   */
  setOwner(id: string, owner: string, expires: Date): Promise<boolean>;
  /**
   * Removes upload `id` only if its owner is still `owner` (`undefined`:
   * still unowned). Returns whether it was removed.
   */
  removeUpload(id: string, owner: string | undefined): Promise<boolean>;
  /**
   * Optional: replaces the running hash of upload `id` with `next` only if
   * the upload is unfinished and its current state has hashed exactly
   * `from` parts (no state counts as 0), and `next.parts` is greater than
   * `from`. Returns whether it was replaced. Without it, `finishUpload`
   * reads every part back to hash the whole blob.
   */
  advanceHashState?(
    id: string,
    from: number,
    next: HashState,
  ): Promise<boolean>;
  /** Removes every upload record that expired before `now`; returns how many. */
  removeExpiredUploads(now: Date): Promise<number>;

  /**
   * Which finished upload serves each multipart blob, by the blob's whole
   * hash (see `MultipartBlobs`). Kept with the catalog so that every
   * process sharing the catalog finds the multipart blobs any of them
   * finished.
   */
  readonly multipart: MultipartRegistry;
}
