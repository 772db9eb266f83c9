/**
 * Blob storage on OpenStack Swift, over nothing but `fetch` (so it runs on
 * Deno, Deno Deploy, Node and browsers alike).
 *
 * {@linkcode SwiftBackend} keeps each blob as an object in one container.
 * Puts stream the body to Swift with chunked transfer encoding while it is
 * verified (size and SHA-384): nothing is buffered beyond the chunk in
 * flight, no temporary file is written, and a body that fails verification
 * or errors aborts the request so Swift discards it. Blobs above Swift's
 * object size limit (5 GiB by default; `segmentSize`) are written as
 * segments plus a Static Large Object manifest and removed with their
 * segments; the segments of a put killed before its manifest show in
 * `list()` under the blob's name, so the orphan sweep removes them. Reads
 * ask Swift for byte ranges.
 *
 * Auth is Keystone v3 (password, project-scoped; the object-store endpoint
 * comes from the catalog) or Swift's v1 auth (tempauth), chosen from the
 * auth URL. The token is cached, renewed before it expires, shared by
 * concurrent requests, and a 401 leads to one re-authentication and retry.
 *
 * @example Keystone v3
 * ```ts ignore
 * import { SwiftBackend } from "@blobstore/blobstore/swift";
 *
 * const backend = new SwiftBackend({
 *   authURL: "https://keystone.example.com:5000/v3",
 *   username: "blobstore",
 *   secret: Deno.env.get("SWIFT_PASSWORD")!,
 *   tenant: "blobstore-project", // the Keystone project
 *   domain: "Default",
 *   region: "RegionOne",
 *   bucket: "blobs", // the container, created on first use
 * });
 * for await (const { name, size } of backend.list()) console.log(name, size);
 * ```
 *
 * @example Swift v1 auth (tempauth), with a custom fetch and timeout
 * ```ts ignore
 * import { SwiftBackend } from "@blobstore/blobstore/swift";
 *
 * const backend = new SwiftBackend({
 *   authURL: "http://127.0.0.1:8390/auth/v1.0",
 *   tenant: "test", // sent as X-Auth-User: test:tester
 *   username: "tester",
 *   secret: "testing",
 *   bucket: "blobs",
 *   fetch: (input, init) => fetch(input, init),
 *   timeoutMs: 30_000,
 * });
 * const { size, body } = await backend.get("some-blob", { start: 0, end: 1024 });
 * ```
 *
 * @module
 */

export { SwiftBackend } from "./src/swift/backend.ts";
export { DEFAULT_SEGMENT_SIZE, type SwiftParams } from "./src/swift/params.ts";
export type { SwiftCredentials } from "./src/swift/auth.ts";
export { SwiftError } from "./src/swift/error.ts";
export type { FetchFn } from "./src/request.ts";
