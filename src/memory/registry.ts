/**
 * The multipart registry of {@linkcode MemoryCatalog}: in the process's
 * memory, lost with it.
 *
 * @module
 */

import type { MultipartEntry, MultipartRegistry } from "../catalog.ts";

/**
 * A {@linkcode MultipartRegistry} in the process's memory: multipart blobs
 * stay readable by hash for as long as the process runs. Each method runs
 * without awaiting, so each compare-and-set is atomic within the process.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryMultipartRegistry } from "@blobstore/blobstore";
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
