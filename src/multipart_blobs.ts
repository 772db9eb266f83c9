/**
 * Multipart blobs served by their whole hash.
 *
 * The store reads a blob made of parts only when given its index, which
 * lives in the upload record, and GC keeps parts only while an upload
 * record names them. So when {@linkcode MultipartBlobs.finish} finishes an
 * upload it
 *
 * 1. registers `hash → upload id` in a {@linkcode MultipartRegistry} (by
 *    default the catalog's own, `Catalog.multipart`, so every process
 *    sharing the catalog finds it), and
 * 2. makes itself the upload's owner with an expiry far in the future, so
 *    `removeExpiredUploads` never reaps the record, the parts it names stay
 *    out of GC's reach, and no client can take the upload over.
 *
 * Reading a hash tries the single blob first, then the registry, then the
 * upload record's index. `gc` releases a multipart blob by removing its
 * upload record and its entry; the next `gc` then reclaims the parts like
 * those of any other upload.
 *
 * @module
 */

import type { OpenedBlob } from "./backend.ts";
import { PartCutter } from "./cut.ts";
import { checkHash } from "./digest.ts";
import {
  HashMismatchError,
  NotFoundError,
  SizeMismatchError,
} from "./errors.ts";
import { type BlobSource, toReadableStream } from "./source.ts";
import { type MultipartIndex, multipartIndex, type Part } from "./multipart.ts";
import type { BlobStat, Store } from "./store.ts";
import type { MultipartEntry, MultipartRegistry } from "./catalog.ts";

/**
 * The owner the service sets on the uploads it finishes.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SERVICE_OWNER } from "@blobstore/blobstore";
 *
 * assert(SERVICE_OWNER === "blobstore-http");
 * ```
 */
export const SERVICE_OWNER = "blobstore-http";

/** An expiry no upload record reaches: the last day of the year 9999. */
const KEEP_FOREVER = new Date(Date.UTC(9999, 11, 31));

/** Attempts at registering a hash before giving up on a pathological race. */
const REGISTER_ATTEMPTS = 8;

/**
 * The part size {@linkcode MultipartBlobs.putUnknown} cuts a large body
 * into: 8 MiB, so that a body is hashed and stored as it arrives, in
 * parts big enough for S3 (5 MiB at least) and few enough for 400 parts
 * to hold 3.2 GiB (larger bodies get larger parts).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { UNKNOWN_PART_SIZE } from "@blobstore/blobstore";
 *
 * assert(UNKNOWN_PART_SIZE === 8 * 1024 * 1024);
 * ```
 */
export const UNKNOWN_PART_SIZE = 8 * 1024 * 1024;

/** How long the upload of a `putUnknown` in progress is kept: a day. */
const UNKNOWN_TTL_MS = 24 * 3600_000;

/**
 * A blob found by its hash: what `Store.open` returns, plus the index when
 * it is made of parts.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { FoundBlob } from "@blobstore/blobstore";
 *
 * const found: FoundBlob = { size: 0, body: new Blob([]).stream() };
 * assert(found.index === undefined);
 * ```
 */
export interface FoundBlob extends OpenedBlob {
  /** The parts of a multipart blob; `undefined` for a single blob. */
  index?: MultipartIndex;
}

/**
 * Finishes uploads so that their blobs stay readable by hash, and opens
 * blobs by hash whether they were put whole or in parts.
 *
 * @example Finish an upload, then read its blob by hash alone
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, MultipartBlobs, sha384, Store } from "@blobstore/blobstore";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend(), minPartSize: 5 });
 * const parts = [new TextEncoder().encode("hello, "), new TextEncoder().encode("world")];
 * const hashes = await Promise.all(parts.map((part) => sha384(part)));
 * const id = await store.newUpload(new Date(Date.now() + 3600_000));
 * await store.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
 * await store.putPart(id, 1, parts[1], parts[1].length, 0, hashes[1]);
 *
 * const blobs = new MultipartBlobs(store);
 * const { hash } = await blobs.finish(id, hashes.map((hash) => ({ hash })));
 * assert((await blobs.stat(hash)).kind === "multipart");
 * const { body } = await blobs.open(hash, { start: 7 });
 * assert(await new Response(body).text() === "world");
 * ```
 */
export class MultipartBlobs {
  /** The store holding the parts and the upload records. */
  readonly store: Store;
  /** The map from whole hash to upload id. */
  readonly registry: MultipartRegistry;
  /** The owner set on finished uploads. */
  readonly owner: string;

  /**
   * Serves the blobs of `store`, registering multipart ones in `registry`
   * (default the catalog's own, `store.catalog.multipart`).
   */
  constructor(
    store: Store,
    registry: MultipartRegistry = store.catalog.multipart,
    owner: string = SERVICE_OWNER,
  ) {
    this.store = store;
    this.registry = registry;
    this.owner = owner;
  }

  /**
   * Finishes upload `uploadId` with `parts` (as `Store.finishUpload`) and
   * makes its blob readable by hash. Calling it again returns the same
   * result. When another live upload already serves the same hash, this
   * one is left unowned with its own expiry, to be reaped as usual.
   */
  async finish(
    uploadId: string,
    parts: Part[],
  ): Promise<{ hash: string; index: MultipartIndex }> {
    const result = await this.store.finishUpload(uploadId, parts);
    for (let attempt = 0; attempt < REGISTER_ATTEMPTS; attempt++) {
      const entry = await this.registry.get(result.hash);
      if (entry && entry.uploadId !== uploadId) {
        if (await this.#serves(entry.uploadId, result.hash)) return result;
      }
      // Register before taking ownership: a registered upload that is not
      // owned yet still has its own (future) expiry, and readers treat an
      // entry whose record has gone as stale, so either order is safe, but
      // this one never leaves an owned, forever-kept upload unregistered.
      if (
        entry?.uploadId !== uploadId &&
        !(await this.registry.compareAndSet(result.hash, entry?.uploadId, {
          uploadId,
          finished: new Date(),
        }))
      ) {
        continue; // another finish or a release changed the entry: look again
      }
      await this.store.setOwner(uploadId, this.owner, KEEP_FOREVER);
      return result;
    }
    throw new Error(
      `could not register multipart blob ${result.hash} after ${REGISTER_ATTEMPTS} attempts`,
    );
  }

  /**
   * Stores the `size` bytes of `source` without knowing their hash, and
   * returns it: the store computes it as the bytes arrive. A body of at
   * most `partSize` bytes (default {@linkcode UNKNOWN_PART_SIZE}, or more
   * to stay within the store's `maxParts`) becomes a single blob, and so
   * does any body on a backend that can stage (files, memory: see
   * `Store.putStaged`; one write, one hash). Elsewhere a larger body
   * becomes parts of `partSize`, each hashed as its bytes arrive (its own
   * hash and the running hash of the whole) and stored while the next
   * arrives, finished with no byte read back and registered here, so it
   * is read by hash like any blob. Memory: two parts.
   *
   * With `expected`, the whole hash must be it: else `HashMismatchError`,
   * and nothing is recorded (parts already stored are garbage for the next
   * GC). A source whose length is not `size` is `SizeMismatchError`, with
   * the same outcome. `created` is false when the blob was already there.
   */
  async putUnknown(
    source: BlobSource,
    size: number,
    options: { partSize?: number; expected?: string } = {},
  ): Promise<{ hash: string; size: number; created: boolean }> {
    const { expected } = options;
    if (expected !== undefined) checkHash(expected, "expected hash");
    const store = this.store;
    const partSize = Math.max(
      options.partSize ?? UNKNOWN_PART_SIZE,
      store.minPartSize,
      Math.ceil(size / store.maxParts),
    );
    if (store.canStage && size > partSize) {
      // One write, one hash, the object named once the hash is known.
      const { hash, created } = await store.putStaged(source, size, {
        expected,
      });
      return { hash, size, created };
    }
    const stream = toReadableStream(source);
    if (size <= partSize) {
      const cutter = new PartCutter(stream, partSize);
      let bytes: Uint8Array = new Uint8Array(0);
      for await (const part of cutter.parts()) {
        if (bytes.byteLength > 0 || part.byteLength > size) {
          throw new SizeMismatchError(size, cutter.bytes);
        }
        bytes = part;
      }
      if (bytes.byteLength !== size) {
        throw new SizeMismatchError(size, bytes.byteLength);
      }
      const { hash, created } = await store.putBytes(bytes, { expected });
      return { hash, size, created };
    }
    const id = await store.newUpload(new Date(Date.now() + UNKNOWN_TTL_MS));
    try {
      const { next, rest, hashes, failure } = await store.putParts(
        id,
        0,
        stream,
        { partSize, size },
      );
      if (failure !== undefined) throw failure;
      const offset = next * partSize + rest.byteLength;
      if (offset !== size) throw new SizeMismatchError(size, offset);
      const parts: Part[] = hashes.map((hash) => ({ hash }));
      if (rest.byteLength > 0) {
        parts.push(await store.putPartBytes(id, next, rest, next * partSize));
      }
      const { hash, created } = await this.publish(id, parts, { expected });
      return { hash, size, created };
    } catch (err) {
      await store.removeUpload(id).catch(() => {});
      throw err;
    }
  }

  /**
   * Finishes upload `uploadId` with `parts` (as `Store.finishUpload`: with
   * the running hash, nothing is read back) and makes its blob readable by
   * hash, returning the hash, the size and whether this upload now serves
   * it. A blob already stored whole (a one-part upload's blob is its part,
   * a plain blob) needs nothing more; otherwise the upload is registered
   * and owned as {@linkcode MultipartBlobs.finish} does, unless another
   * upload serves the same hash already (`created: false`).
   *
   * An upload that does not end up serving the blob is removed, unless
   * `keep` is set: then it stays, finished and unowned, until its own
   * expiry (a resumable upload whose client may still ask for its state).
   * With `expected`, a whole hash that differs is a `HashMismatchError`
   * thrown after the upload was finished and before anything registers
   * it: the caller removes the upload (its parts become garbage).
   *
   * @example Publish an upload whose parts were put from bytes
   * ```ts
   * import assert from "node:assert";
   * import { MemoryBackend, MemoryCatalog, MultipartBlobs, Store } from "@blobstore/blobstore";
   *
   * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend(), minPartSize: 5 });
   * const blobs = new MultipartBlobs(store);
   * const id = await store.newUpload(new Date(Date.now() + 3600_000));
   * const encoder = new TextEncoder();
   * const a = await store.putPartBytes(id, 0, encoder.encode("hello, "), 0);
   * const b = await store.putPartBytes(id, 1, encoder.encode("world"), 7);
   * const { hash, size, created } = await blobs.publish(id, [a, b]);
   * assert(size === 12 && created);
   * assert(await new Response((await blobs.open(hash)).body).text() === "hello, world");
   * ```
   */
  async publish(
    uploadId: string,
    parts: Part[],
    options: { expected?: string; keep?: boolean } = {},
  ): Promise<{ hash: string; size: number; created: boolean }> {
    const { expected, keep = false } = options;
    if (expected !== undefined) checkHash(expected, "expected hash");
    const store = this.store;
    const { hash, index } = await store.finishUpload(uploadId, parts);
    const size = index.sizes.reduce((sum, n) => sum + n, 0);
    if (expected !== undefined && hash !== expected) {
      throw new HashMismatchError(expected, hash);
    }
    if (await store.catalog.getRef(hash)) {
      // Already stored whole: this copy is not needed to serve it.
      if (!keep) await store.removeUpload(uploadId);
      return { hash, size, created: false };
    }
    await this.finish(uploadId, parts);
    const created = (await this.registry.get(hash))?.uploadId === uploadId;
    if (!created && !keep) await store.removeUpload(uploadId);
    return { hash, size, created };
  }

  /**
   * Opens the blob `hash`, single or multipart, reading `[start, end)`.
   * Throws `NotFoundError` when neither exists.
   */
  async open(
    hash: string,
    range: { start?: number; end?: number } = {},
  ): Promise<FoundBlob> {
    try {
      return await this.store.open(hash, range);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      const index = await this.index(hash);
      if (!index) throw err;
      return { ...(await this.store.open(hash, { ...range, index })), index };
    }
  }

  /**
   * The size and kind of the blob `hash`, single or multipart, from the
   * catalog and the registry alone (`Store.stat`). Throws `NotFoundError`
   * when neither exists.
   */
  stat(hash: string): Promise<BlobStat> {
    return this.store.stat(hash, { registry: this.registry });
  }

  /**
   * Returns the index of the registered multipart blob `hash`, or
   * `undefined` when there is none. An entry whose upload record has gone
   * is removed on the way.
   */
  async index(hash: string): Promise<MultipartIndex | undefined> {
    const entry = await this.registry.get(hash);
    if (!entry) return undefined;
    const info = await this.store.uploadInfo(entry.uploadId).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (!info) {
      await this.registry.compareAndSet(hash, entry.uploadId, undefined);
      return undefined;
    }
    return info.hash === hash ? multipartIndex(info) : undefined;
  }

  /** Yields every registered multipart blob (for `collect`). */
  entries(): AsyncIterable<MultipartEntry & { hash: string }> {
    return this.registry.entries();
  }

  /**
   * Stops serving the multipart blob `hash` held by upload `uploadId`: the
   * upload record goes (the parts become garbage for the next `gc` unless
   * something else holds them), then the entry. Returns whether the entry
   * was dropped. An upload that another owner has taken is left alone
   * (`ConflictError`): only the service's own uploads, or unowned ones,
   * are removed here.
   */
  async release(hash: string, uploadId: string): Promise<boolean> {
    // The record first: a crash in between leaves a stale entry, which
    // readers drop, rather than an owned record nothing would ever reap.
    await this.store.removeUpload(uploadId, {
      isOwnedBy: (_id, owner) => owner !== this.owner,
    });
    return await this.registry.compareAndSet(hash, uploadId, undefined);
  }

  async #serves(uploadId: string, hash: string): Promise<boolean> {
    try {
      return (await this.store.uploadInfo(uploadId)).hash === hash;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }
}
