/**
 * The store on Deno KV, with no server at all: {@linkcode KvCatalog} keeps
 * blob references and upload records, {@linkcode KvBackend} keeps the bytes
 * as 64 KiB chunks. Locally `Deno.openKv(path)` is a SQLite file; on Deno
 * Deploy `Deno.openKv()` is the hosted KV, shared by every isolate, and the
 * catalog's atomic steps keep concurrent stores correct.
 *
 * Deno KV is still unstable: run with `--unstable-kv`, or add
 * `"unstable": ["kv"]` to your deno.json. Nothing else in this package
 * needs a flag.
 *
 * @example A persistent store in one KV file
 * ```ts
 * import { sha384, Store } from "@blobstore/blobstore";
 * import { KvBackend, KvCatalog } from "@blobstore/blobstore/kv";
 *
 * const kv = await Deno.openKv(":memory:"); // or a path, or nothing on Deploy
 * const store = new Store({ catalog: new KvCatalog(kv), backend: new KvBackend(kv) });
 * const bytes = new TextEncoder().encode("hello, world");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * const { body } = await store.open(hash, { start: 7 });
 * console.assert((await new Response(body).text()) === "world");
 * kv.close();
 * ```
 *
 * @example A KV catalog with the bytes on disk
 * ```ts
 * import { Store } from "@blobstore/blobstore";
 * import { KvCatalog } from "@blobstore/blobstore/kv";
 * import { FileBackend } from "@blobstore/blobstore/fs";
 *
 * const kv = await Deno.openKv(":memory:");
 * const root = await Deno.makeTempDir();
 * const store = new Store({ catalog: new KvCatalog(kv), backend: new FileBackend(root) });
 * console.assert(store.maxParts === 400);
 * kv.close();
 * await Deno.remove(root, { recursive: true });
 * ```
 *
 * @module
 */

export { KvCatalog, MAX_KV_PARTS, PARTS_PER_PAGE } from "./src/kv/catalog.ts";
export { KV_CHUNK_SIZE, KvBackend } from "./src/kv/backend.ts";
export type { KvBackendOptions } from "./src/kv/backend.ts";
export { KvMultipartRegistry } from "./src/kv/registry.ts";
