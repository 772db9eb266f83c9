/**
 * A content-addressed blob store for Deno: blobs are stored once by their
 * SHA-384 hash, streamed end to end with Web Streams (memory stays flat
 * whatever the size), uploaded in parts S3-style when large, and garbage
 * collected once nothing refers to them.
 *
 * The store sits on two seams: a {@linkcode Catalog} (blob references and
 * upload records) and a {@linkcode Backend} (the bytes). This entry point
 * has the store and the in-memory seams; MongoDB, Swift, Deno KV, the file
 * system and the HTTP handler live in the subpath exports `./mongo`,
 * `./swift`, `./kv`, `./fs` and `./http`, so you load only what you use.
 *
 * @example Put a blob, de-duplicate it, read a range of it
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, sha384, Store } from "@blobstore/blobstore";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const bytes = new TextEncoder().encode("hello, world");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * await store.put(new Blob([bytes]), hash, bytes.length); // stored once, verified again
 * const { body } = await store.open(hash, { start: 7, end: 12 });
 * assert((await new Response(body).text()) === "world");
 * ```
 *
 * @module
 */

export { Store } from "./src/store.ts";
export type {
  BlobStat,
  OpenOptions,
  PutResult,
  StoreOptions,
} from "./src/store.ts";
export type { BlobSource } from "./src/source.ts";
export { toReadableStream } from "./src/source.ts";
export { isValidHash, sha384, Sha384Stream } from "./src/digest.ts";
export { verified, type VerifyOptions, VerifyStream } from "./src/verify.ts";
export { type Hashing, WORKER_MIN_SIZE } from "./src/hashing.ts";
export { ResumableSha384 } from "./src/resumable_sha384.ts";
export { multipartIndex } from "./src/multipart.ts";
export type {
  MultipartIndex,
  Part,
  PartInfo,
  UploadInfo,
} from "./src/multipart.ts";
export type { BlobStats } from "./src/gc.ts";
export { DEFAULT_GRACE_MS } from "./src/sweep.ts";
export type { SweepOptions, SweepStats } from "./src/sweep.ts";
export { collect } from "./src/collect.ts";
export type {
  CollectOptions,
  CollectResult,
  MultipartReleaser,
} from "./src/collect.ts";
export { Refs } from "./src/refs.ts";
export type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
  StagedObject,
} from "./src/backend.ts";
export type { PutPartsResult } from "./src/part_pipeline.ts";
export type {
  BlobRef,
  Catalog,
  HashState,
  MultipartEntry,
  MultipartRegistry,
  PartRecord,
  UploadRecord,
} from "./src/catalog.ts";
export { MemoryCatalog } from "./src/memory/catalog.ts";
export { MemoryMultipartRegistry } from "./src/memory/registry.ts";
export {
  type FoundBlob,
  MultipartBlobs,
  SERVICE_OWNER,
  UNKNOWN_PART_SIZE,
} from "./src/multipart_blobs.ts";
export { PartCutter } from "./src/cut.ts";
export { MemoryBackend } from "./src/memory/backend.ts";
export {
  BadParamsError,
  BlobStoreError,
  ConflictError,
  CorruptBlobError,
  HashMismatchError,
  IntegrityError,
  NotFoundError,
  RetryableError,
  ServiceError,
  SizeMismatchError,
} from "./src/errors.ts";
