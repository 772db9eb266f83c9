/**
 * The multipart registry in Deno KV: the HTTP server's default, sharing
 * the KV database of the catalog.
 *
 * @module
 */

import type { MultipartEntry, MultipartRegistry } from "../catalog.ts";

/**
 * A {@linkcode MultipartRegistry} in Deno KV, one key per hash under
 * `[...prefix, hash]`; `KvCatalog` keeps one under `[prefix, "multipart"]`
 * as its `multipart`. Compare-and-set is a KV atomic operation checked
 * against the entry's versionstamp, so processes sharing the database (a
 * server and the CLI on one data directory, Deno Deploy isolates) agree.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { KvMultipartRegistry } from "@blobstore/blobstore/kv";
 *
 * const kv = await Deno.openKv(":memory:");
 * const registry = new KvMultipartRegistry(kv);
 * const hash = "a".repeat(96);
 * await registry.compareAndSet(hash, undefined, { uploadId: "u1", finished: new Date() });
 * assert((await registry.get(hash))?.uploadId === "u1");
 * kv.close();
 * ```
 */
export class KvMultipartRegistry implements MultipartRegistry {
  #kv: Deno.Kv;
  #prefix: Deno.KvKey;

  /**
   * Uses `kv` under the key prefix `prefix` (default
   * `["blobstore-http", "multipart"]`, apart from the catalog's keys).
   */
  constructor(
    kv: Deno.Kv,
    prefix: Deno.KvKey = ["blobstore-http", "multipart"],
  ) {
    this.#kv = kv;
    this.#prefix = prefix;
  }

  /** See {@linkcode MultipartRegistry.get}. */
  async get(hash: string): Promise<MultipartEntry | undefined> {
    const { value } = await this.#kv.get<MultipartEntry>([
      ...this.#prefix,
      hash,
    ]);
    return value ?? undefined;
  }

  /** See {@linkcode MultipartRegistry.compareAndSet}. */
  async compareAndSet(
    hash: string,
    expected: string | undefined,
    entry: MultipartEntry | undefined,
  ): Promise<boolean> {
    const key = [...this.#prefix, hash];
    const current = await this.#kv.get<MultipartEntry>(key);
    if (current.value?.uploadId !== expected) return false;
    const op = this.#kv.atomic().check(current);
    if (entry) op.set(key, { ...entry });
    else op.delete(key);
    return (await op.commit()).ok;
  }

  /** See {@linkcode MultipartRegistry.entries}. */
  async *entries(): AsyncIterable<MultipartEntry & { hash: string }> {
    for await (
      const { key, value } of this.#kv.list<MultipartEntry>({
        prefix: this.#prefix,
      })
    ) {
      yield { hash: String(key[key.length - 1]), ...value };
    }
  }
}
