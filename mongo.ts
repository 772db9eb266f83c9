/**
 * The store on MongoDB: {@linkcode MongoCatalog} keeps blob references and
 * upload records in two collections, {@linkcode MongoBackend} keeps the
 * bytes in GridFS. Both use the Go charmstore blobstore's layout and
 * document shapes, so they run on a deployment's existing data:
 *
 * - `<prefix>.blobref`: `{ _id: hash, name, puttime, size }`
 * - `<prefix>.upload`: `{ _id, hash?, expires, parts: [{ hash, size,
 *   complete, offset } | null], owner? }`
 * - GridFS bucket `<prefix>` (`<prefix>.files`, `<prefix>.chunks`), the
 *   blob's name as `filename`.
 *
 * Every conditional step is one atomic single-document operation, so any
 * number of stores can share a database, and a single server (no replica
 * set, no transactions) is enough. It runs on MongoDB and on FerretDB.
 *
 * A failure of the driver or the server that the code does not handle on
 * purpose is thrown as a {@linkcode MongoStoreError} (a `BlobStoreError`)
 * naming the method and the collection, the driver's error as its `cause`;
 * the store's own errors (`NotFoundError`, `HashMismatchError`,
 * `SizeMismatchError`…) pass through as they are.
 *
 * This subpath is the only part of the package that loads the `mongodb`
 * driver (`npm:mongodb@6`).
 *
 * @example Wiring a store to MongoDB (nothing is sent before the first call)
 * ```ts
 * import assert from "node:assert";
 * import { Store } from "@blobstore/blobstore";
 * import { MongoBackend, MongoCatalog } from "@blobstore/blobstore/mongo";
 * import { MongoClient } from "mongodb";
 *
 * const client = new MongoClient("mongodb://127.0.0.1:27017/");
 * const db = client.db("charmstore");
 * const store = new Store({
 *   catalog: new MongoCatalog(db, "blobstore"),
 *   backend: new MongoBackend(db, "blobstore"),
 * });
 * assert.strictEqual(store.maxParts, 400);
 * await client.close();
 * ```
 *
 * @example Put, read back, collect garbage
 * ```ts ignore
 * import { Refs, sha384, Store } from "@blobstore/blobstore";
 * import { MongoBackend, MongoCatalog } from "@blobstore/blobstore/mongo";
 * import { MongoClient } from "mongodb";
 *
 * const client = await MongoClient.connect("mongodb://127.0.0.1:27017/");
 * const db = client.db("charmstore");
 * const catalog = new MongoCatalog(db, "blobstore");
 * await catalog.ensureIndexes(); // or let the first GC create them
 * const store = new Store({ catalog, backend: new MongoBackend(db, "blobstore") });
 *
 * const bytes = new TextEncoder().encode("hello, world");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * const { body } = await store.open(hash, { start: 7 });
 * console.log(await new Response(body).text()); // "world"
 *
 * const refs = new Refs();
 * refs.add(hash); // everything still in use
 * await store.gc(refs, new Date(Date.now() - 60_000));
 * await client.close();
 * ```
 *
 * @module
 */

export { MongoCatalog } from "./src/mongo/catalog.ts";
export { MongoBackend } from "./src/mongo/backend.ts";
export { MongoStoreError } from "./src/mongo/error.ts";
export type { MongoBackendOptions } from "./src/mongo/backend.ts";
export { MongoMultipartRegistry } from "./src/mongo/registry.ts";
