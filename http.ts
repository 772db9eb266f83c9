/**
 * The blob store as an HTTP service: {@linkcode createHandler} returns a
 * plain `(req: Request) => Promise<Response>` for `Deno.serve`,
 * `deno serve` or Deno Deploy, mountable under a path prefix.
 *
 * Blobs go in with `PUT /blobs/{sha384}` and come out of
 * `GET /blobs/{sha384}` (ranges, `ETag`, `Repr-Digest`, 304); large ones
 * can go in parts through `/uploads`, and a finished multipart blob is
 * read by its hash like any other, the service remembering which upload
 * holds its index in a {@linkcode MultipartRegistry}.
 *
 * @example Serving a store
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
 * import { createHandler } from "@blobstore/blobstore/http";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const server = Deno.serve(
 *   { hostname: "127.0.0.1", port: 0, onListen() {} },
 *   createHandler(store, { prefix: "/store", authorize: false }),
 * );
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/store/`);
 * assert((await res.json()).service === "blobstore");
 * await server.shutdown();
 * ```
 *
 * Resumable uploads speak tus 1.0.0 under `/tus/` (the `tus` option):
 * any tus client can send a blob in pieces, resume after a dropped
 * connection or a restart, and learn the blob's hash at the end.
 *
 * @example A tus upload in two PATCHes, then the blob by its hash
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
 * import { createHandler } from "@blobstore/blobstore/http";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const handler = createHandler(store, { authorize: false, tus: { prefix: "/files/" } });
 * const tus = { "tus-resumable": "1.0.0" };
 * const created = await handler(new Request("http://localhost/files/", {
 *   method: "POST",
 *   headers: { ...tus, "upload-length": "11", "upload-metadata": `filename ${btoa("hello.txt")}` },
 * }));
 * assert.strictEqual(created.status, 201);
 * const url = new URL(created.headers.get("location")!, "http://localhost/");
 * let offset = 0;
 * for (const piece of ["hello", " world"]) {
 *   const res = await handler(new Request(url, {
 *     method: "PATCH",
 *     headers: { ...tus, "content-type": "application/offset+octet-stream", "upload-offset": String(offset) },
 *     body: piece,
 *   }));
 *   assert.strictEqual(res.status, 204);
 *   offset = Number(res.headers.get("upload-offset"));
 * }
 * const done = await handler(new Request(url, { method: "HEAD", headers: tus }));
 * const blob = done.headers.get("content-location")!; // /blobs/<sha384>
 * const got = await handler(new Request(new URL(blob, "http://localhost/")));
 * assert.strictEqual(await got.text(), "hello world");
 * ```
 *
 * @module
 */

export { createHandler, type HandlerOptions } from "./src/http/handler.ts";
export type { TusOptions } from "./src/tus/handler.ts";
export type { CorsOptions } from "./src/http/cors.ts";
export type { ServeInfo } from "./src/http/limits.ts";
export { Metrics, METRICS_CONTENT_TYPE } from "./src/http/metrics.ts";
export { type Authorizer, bearerToken } from "./src/http/auth.ts";
export type { MultipartEntry, MultipartRegistry } from "./src/catalog.ts";
export { MemoryMultipartRegistry } from "./src/memory/registry.ts";
export { KvMultipartRegistry } from "./src/kv/registry.ts";
export {
  type FoundBlob,
  MultipartBlobs,
  SERVICE_OWNER,
} from "./src/multipart_blobs.ts";
