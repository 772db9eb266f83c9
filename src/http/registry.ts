/**
 * The multipart registry seam: which finished upload serves a blob that
 * was uploaded in parts, by the blob's whole hash.
 *
 * The store reads a multipart blob only when given its index, and an index
 * lives in the upload record; a client that later asks for the blob knows
 * only its hash. So the HTTP service keeps this small map from the whole
 * hash to the upload id, and reads the index from the upload record when
 * the blob is opened (see `MultipartBlobs` for how the record is kept
 * alive and GC-safe).
 *
 * @module
 */

/**
 * What the registry holds for one multipart blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { MultipartEntry } from "./registry.ts";
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
 * Implementations: `MemoryMultipartRegistry` (lost with the process),
 * `KvMultipartRegistry` (Deno KV, the server's default), and a MongoDB one
 * the server uses beside the MongoDB catalog.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryMultipartRegistry, type MultipartRegistry } from "./registry.ts";
 *
 * const registry: MultipartRegistry = new MemoryMultipartRegistry();
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
 * A {@linkcode MultipartRegistry} in the process's memory: multipart blobs
 * stay readable by hash for as long as the process runs. Each method runs
 * without awaiting, so each compare-and-set is atomic within the process.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryMultipartRegistry } from "./registry.ts";
 *
 * const registry = new MemoryMultipartRegistry();
 * assert(await registry.get("a".repeat(96)) === undefined);
 * ```
 */
export class MemoryMultipartRegistry implements MultipartRegistry {
  #entries = new Map<string, MultipartEntry>();

  /** See {@linkcode MultipartRegistry.get}. */
  get(hash: string): Promise<MultipartEntry | undefined> {
    return Promise.resolve(copyEntry(this.#entries.get(hash)));
  }

  /** See {@linkcode MultipartRegistry.compareAndSet}. */
  compareAndSet(
    hash: string,
    expected: string | undefined,
    entry: MultipartEntry | undefined,
  ): Promise<boolean> {
    if (this.#entries.get(hash)?.uploadId !== expected) {
      return Promise.resolve(false);
    }
    if (entry) this.#entries.set(hash, copyEntry(entry)!);
    else this.#entries.delete(hash);
    return Promise.resolve(true);
  }

  /** See {@linkcode MultipartRegistry.entries}. */
  async *entries(): AsyncIterable<MultipartEntry & { hash: string }> {
    for (const [hash, entry] of [...this.#entries]) {
      yield { hash, ...copyEntry(entry)! };
    }
  }
}

function copyEntry(
  entry: MultipartEntry | undefined,
): MultipartEntry | undefined {
  return entry &&
    { uploadId: entry.uploadId, finished: new Date(entry.finished) };
}
