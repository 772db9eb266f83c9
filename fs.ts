/**
 * The bytes of blobs as files in a local directory: {@linkcode FileBackend}.
 * Pair it with any catalog (`MemoryCatalog` for a throwaway store,
 * `KvCatalog` from `./kv` or `MongoCatalog` from `./mongo` for a lasting
 * one). Needs no unstable flag, only read and write permission on the
 * directory.
 *
 * @example A store whose bytes live under a directory
 * ```ts
 * import { MemoryCatalog, sha384, Store } from "@blobstore/blobstore";
 * import { FileBackend } from "@blobstore/blobstore/fs";
 *
 * const root = await Deno.makeTempDir();
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new FileBackend(root) });
 * const bytes = new TextEncoder().encode("hello, world");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * const { body } = await store.open(hash, { end: 5 });
 * console.assert((await new Response(body).text()) === "hello");
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */

export { FileBackend } from "./src/fs/backend.ts";
export type { FileBackendOptions } from "./src/fs/backend.ts";
