/**
 * The blob store: content-addressed blobs over a catalog and a backend.
 *
 * @module
 */

import type { Backend, OpenedBlob } from "./backend.ts";
import type { Catalog, UploadRecord } from "./catalog.ts";
import { concatStreams } from "./concat.ts";
import { isValidHash, sha384 } from "./digest.ts";
import { BadParamsError, ConflictError, NotFoundError } from "./errors.ts";
import { type BlobStats, collectGarbage } from "./gc.ts";
import {
  checkFinish,
  checkPartParams,
  checkPartPlacement,
  inferOffset,
  type MultipartIndex,
  type Part,
  type UploadInfo,
} from "./multipart.ts";
import { newBlobName, newUploadId } from "./names.ts";
import { resolveRange } from "./range.ts";
import type { Refs } from "./refs.ts";
import { sweepOrphans, type SweepStats } from "./sweep.ts";
import { type BlobSource, toReadableStream } from "./source.ts";
import { VerifyStream } from "./verify.ts";

/**
 * What a {@linkcode Store} is made of.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { StoreOptions } from "./store.ts";
 * import { MemoryBackend } from "./backends/memory.ts";
 * import { MemoryCatalog } from "./catalogs/memory.ts";
 *
 * const options: StoreOptions = { catalog: new MemoryCatalog(), backend: new MemoryBackend(), minPartSize: 1024 };
 * assert(options.minPartSize === 1024);
 * ```
 */
export interface StoreOptions {
  /** Where blob references and upload records live. */
  catalog: Catalog;
  /** Where the bytes live. */
  backend: Backend;
  /** The least size of every part of an upload but the last (default 5 MiB). */
  minPartSize?: number;
  /** One more than the greatest size of a part (default 2^32 - 1). */
  maxPartSize?: number;
  /** One more than the greatest part number (default 400). */
  maxParts?: number;
}

/**
 * What to open: a byte range, and for a blob made of parts, its index.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { OpenOptions } from "./store.ts";
 *
 * const tail: OpenOptions = { start: 100 };
 * assert(tail.end === undefined);
 * ```
 */
export interface OpenOptions {
  /** The index of a blob made of parts, as `finishUpload` returned it. */
  index?: MultipartIndex;
  /** The first byte to read (default 0). */
  start?: number;
  /** One past the last byte to read (default the blob's size). */
  end?: number;
}

/**
 * A content-addressed blob store: blobs are put and opened by their SHA-384
 * hash, stored once whatever the number of puts, and deleted by garbage
 * collection once nothing refers to them. Large blobs can be uploaded in
 * parts, S3-style.
 *
 * The store holds no state of its own: every decision is one atomic step
 * of its catalog, so any number of stores (processes, machines) can share a
 * catalog and a backend.
 *
 * @example Put a blob and read it back
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, sha384, Store } from "../mod.ts";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const bytes = new TextEncoder().encode("hello, world");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * const { size, body } = await store.open(hash, { start: 7 });
 * assert(size === 12 && (await new Response(body).text()) === "world");
 * ```
 */
export class Store {
  /** The catalog this store records blobs and uploads in. */
  readonly catalog: Catalog;
  /** The backend this store keeps bytes in. */
  readonly backend: Backend;
  /** The least size of every part of an upload but the last. */
  minPartSize: number;
  /** One more than the greatest size of a part. */
  maxPartSize: number;
  /** One more than the greatest part number. */
  maxParts: number;

  /** Creates a store over `catalog` and `backend`. */
  constructor(options: StoreOptions) {
    this.catalog = options.catalog;
    this.backend = options.backend;
    this.minPartSize = options.minPartSize ?? 5 * 1024 * 1024;
    this.maxPartSize = options.maxPartSize ?? 2 ** 32 - 1;
    this.maxParts = options.maxParts ?? 400;
  }

  /**
   * Stores the `size` bytes of `source` as the blob `hash`, verifying both as
   * they stream. See {@linkcode Store.putAtTime}.
   */
  put(source: BlobSource, hash: string, size: number): Promise<void> {
    return this.putAtTime(source, hash, size, new Date());
  }

  /**
   * Like {@linkcode Store.put}, recording `now` as the put time (GC spares
   * blobs put after its cut-off).
   *
   * A blob already stored is not stored again: its put time is refreshed
   * first (so a concurrent GC spares it), then `source` is still read and
   * verified against `hash` and `size`. A new blob is streamed to the
   * backend under a fresh name and recorded only once verified. Content that
   * does not match throws `HashMismatchError` or `SizeMismatchError`; then,
   * as when `source` fails, nothing is recorded and nothing stays in the
   * backend.
   */
  async putAtTime(
    source: BlobSource,
    hash: string,
    size: number,
    now: Date,
  ): Promise<void> {
    checkHash(hash);
    checkSize(size);
    const body = toReadableStream(source);
    if (await this.catalog.touchRef(hash, now)) {
      await body.pipeThrough(new VerifyStream(size, hash)).pipeTo(
        new WritableStream(),
      );
      return;
    }
    const name = newBlobName(hash);
    await this.backend.put(name, body, size, hash);
    let inserted: boolean;
    try {
      inserted = await this.catalog.insertRef({
        hash,
        name,
        putTime: now,
        size,
      });
    } catch (err) {
      await this.backend.remove(name).catch(() => {});
      throw err;
    }
    if (!inserted) {
      // A concurrent put of the same content recorded its copy first: ours
      // is surplus. Refresh the winner's put time so that this put, too,
      // counts for a GC that started before it.
      await this.backend.remove(name);
      await this.catalog.touchRef(hash, now);
    }
  }

  /**
   * Opens the blob `hash` for reading, or with `index`, the blob made of the
   * parts the index lists. `start` and `end` read a byte range; only the
   * parts and bytes it covers are fetched. `size` is always the whole
   * blob's. Throws `NotFoundError` when the blob (or a part) is absent.
   */
  async open(hash: string, options: OpenOptions = {}): Promise<OpenedBlob> {
    checkHash(hash);
    const { index, start, end } = options;
    if (index) return await this.#openMultipart(index, { start, end });
    const ref = await this.catalog.getRef(hash);
    if (!ref) throw new NotFoundError(`blob ${hash} not found`);
    return await this.backend.get(ref.name, { start, end });
  }

  async #openMultipart(
    index: MultipartIndex,
    range: { start?: number; end?: number },
  ): Promise<OpenedBlob> {
    checkIndex(index);
    if (index.hashes.length === 1) {
      return await this.open(index.hashes[0], range);
    }
    const total = index.sizes.reduce((a, b) => a + b, 0);
    const { start, end } = resolveRange(range, total);
    const sections = [];
    let offset = 0;
    for (let i = 0; i < index.hashes.length; i++) {
      const partStart = offset;
      offset += index.sizes[i];
      if (offset <= start || partStart >= end) continue;
      // Look every needed part up now, so a missing part is a NotFoundError
      // from open rather than a failure halfway through the body.
      const ref = await this.catalog.getRef(index.hashes[i]);
      if (!ref) {
        throw new NotFoundError(
          `part ${i} (blob ${index.hashes[i]}) not found`,
        );
      }
      const from = Math.max(start - partStart, 0);
      const to = Math.min(end - partStart, index.sizes[i]);
      sections.push({
        size: to - from,
        open: async () =>
          (await this.backend.get(ref.name, { start: from, end: to })).body,
      });
    }
    return { size: total, body: concatStreams(sections) };
  }

  /**
   * Deletes every blob put at or before `before` that neither `refs` nor any
   * upload record holds, and returns statistics on the blobs it kept. Pass a
   * `before` somewhat earlier than when `refs` was gathered, so that blobs
   * being put meanwhile are spared.
   */
  gc(refs: Refs, before: Date): Promise<BlobStats> {
    return collectGarbage(this.catalog, this.backend, refs, before);
  }

  /**
   * Removes the backend objects that no reference names and that are older
   * than `olderThan` milliseconds: the leftovers of puts that crashed
   * between writing their bytes and recording them. Objects younger than
   * the grace period may belong to a put still running and are kept.
   */
  sweepOrphans(options: { olderThan: number }): Promise<SweepStats> {
    return sweepOrphans(this.catalog, this.backend, options.olderThan);
  }

  /**
   * Starts a multipart upload whose record expires at `expires`, and
   * returns its id.
   */
  async newUpload(expires: Date): Promise<string> {
    checkDate("expiry", expires);
    const id = newUploadId();
    await this.catalog.insertUpload({ id, expires, parts: [] });
    return id;
  }

  /**
   * Uploads part number `part` of upload `uploadId`: `size` bytes of
   * `source` starting at `offset` in the whole blob, with SHA-384 `hash`.
   * Pass `offset` 0 for a later part uploaded right after its predecessor
   * and it is inferred. Re-sending a complete part with the same hash does
   * nothing; with another hash it is a `ConflictError`.
   *
   * The part's record is created before its bytes are put, so GC keeps the
   * part's blob from then on, and a failed put leaves an incomplete record
   * that a retry completes, never a lost blob.
   */
  async putPart(
    uploadId: string,
    part: number,
    source: BlobSource,
    size: number,
    offset: number,
    hash: string,
  ): Promise<void> {
    checkHash(hash);
    checkPartParams(part, size, this);
    const upload = await this.#getUpload(uploadId);
    if (upload.hash !== undefined) {
      throw new ConflictError(
        `cannot upload part ${part}: upload "${uploadId}" already finished`,
      );
    }
    offset = inferOffset(upload.parts, part, offset);
    checkPartPlacement(upload.parts, part, size, offset, this.minPartSize);
    const existing = upload.parts[part];
    if (existing) {
      if (existing.hash !== hash) {
        throw new ConflictError(
          `part ${part} already uploaded with another hash (expected ${existing.hash}, got ${hash})`,
        );
      }
      if (existing.complete) {
        await cancelSource(source);
        return;
      }
      // An earlier attempt failed or is still running: put the bytes again.
    } else if (
      !await this.catalog.initPart(uploadId, part, {
        hash,
        size,
        offset,
        complete: false,
      })
    ) {
      const now = await this.#getUpload(uploadId);
      throw new ConflictError(
        now.hash !== undefined
          ? `cannot upload part ${part}: upload "${uploadId}" already finished`
          : `part ${part} of upload "${uploadId}" is being created concurrently`,
      );
    }
    await this.put(source, hash, size);
    if (!await this.catalog.completePart(uploadId, part, hash)) {
      throw new NotFoundError(
        `upload "${uploadId}" was removed while part ${part} was uploading`,
      );
    }
  }

  /**
   * Finishes upload `uploadId`, whose parts are `parts` in order: checks
   * them against what was uploaded, computes the hash of the whole blob by
   * streaming the parts (one part: its own hash), and returns that hash and
   * the index to open the blob with. Finishing again returns the same.
   */
  async finishUpload(
    uploadId: string,
    parts: Part[],
  ): Promise<{ index: MultipartIndex; hash: string }> {
    const upload = await this.#getUpload(uploadId);
    const index = checkFinish(upload, parts, this.minPartSize);
    if (upload.hash !== undefined) return { index, hash: upload.hash };
    const hash = index.hashes.length === 1
      ? index.hashes[0]
      : await sha384((await this.#openMultipart(index, {})).body);
    if (!await this.catalog.setUploadHash(uploadId, hash)) {
      // Another finish won the race (it computed the same hash from the same
      // parts), or the upload was removed meanwhile.
      const now = await this.#getUpload(uploadId);
      return { index, hash: now.hash ?? hash };
    }
    return { index, hash };
  }

  /** Returns the state of upload `uploadId`. */
  async uploadInfo(uploadId: string): Promise<UploadInfo> {
    const { parts, expires, hash, owner } = await this.#getUpload(uploadId);
    return { parts, expires, hash, owner };
  }

  /**
   * Marks the finished upload `uploadId` as used by `owner` and moves its
   * expiry to `expires`. The owner is set once: the same owner again is
   * fine, another one is a `ConflictError`, as is an unfinished upload.
   */
  async setOwner(
    uploadId: string,
    owner: string,
    expires: Date,
  ): Promise<void> {
    if (typeof owner !== "string" || owner === "") {
      throw new BadParamsError(
        `invalid owner (expected a non-empty string, got ${
          JSON.stringify(owner)
        })`,
      );
    }
    checkDate("expiry", expires);
    if (await this.catalog.setOwner(uploadId, owner, expires)) return;
    const upload = await this.#getUpload(uploadId);
    throw new ConflictError(
      upload.hash === undefined
        ? `cannot set owner of upload "${uploadId}": not finished yet`
        : `cannot set owner of upload "${uploadId}" to ${
          JSON.stringify(owner)
        }: already owned by ${JSON.stringify(upload.owner)}`,
    );
  }

  /**
   * Removes the record of upload `uploadId`; its parts become garbage for
   * the next GC unless something else holds them. Removing an upload that
   * is gone does nothing. An owned upload is kept (`ConflictError`) unless
   * `isOwnedBy` says its owner no longer uses it.
   */
  async removeUpload(
    uploadId: string,
    options: {
      isOwnedBy?: (
        uploadId: string,
        owner: string,
      ) => boolean | Promise<boolean>;
    } = {},
  ): Promise<void> {
    const upload = await this.catalog.getUpload(uploadId);
    if (!upload) return;
    if (
      upload.owner !== undefined &&
      (!options.isOwnedBy || await options.isOwnedBy(uploadId, upload.owner))
    ) {
      throw new ConflictError(
        `cannot remove upload "${uploadId}": in use by ${
          JSON.stringify(upload.owner)
        }`,
      );
    }
    if (await this.catalog.removeUpload(uploadId, upload.owner)) return;
    // Gone meanwhile is fine; an owner set meanwhile keeps it.
    const now = await this.catalog.getUpload(uploadId);
    if (now) {
      throw new ConflictError(
        `cannot remove upload "${uploadId}": in use by ${
          JSON.stringify(now.owner)
        }`,
      );
    }
  }

  /** Removes every upload record whose expiry is before `now`. */
  async removeExpiredUploads(now: Date = new Date()): Promise<void> {
    checkDate("time", now);
    await this.catalog.removeExpiredUploads(now);
  }

  async #getUpload(uploadId: string): Promise<UploadRecord> {
    const upload = typeof uploadId === "string"
      ? await this.catalog.getUpload(uploadId)
      : undefined;
    if (!upload) {
      throw new NotFoundError(`upload ${JSON.stringify(uploadId)} not found`);
    }
    return upload;
  }
}

function checkHash(hash: string): void {
  if (!isValidHash(hash)) {
    throw new BadParamsError(
      `implausible hash ${
        JSON.stringify(hash)
      } (expected 96 lowercase hex characters)`,
    );
  }
}

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new BadParamsError(
      `invalid size (expected a non-negative integer, got ${size})`,
    );
  }
}

function checkDate(what: string, date: Date): void {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new BadParamsError(`invalid ${what} (expected a Date, got ${date})`);
  }
}

function checkIndex(index: MultipartIndex): void {
  const { sizes, hashes } = index;
  if (
    !Array.isArray(sizes) || !Array.isArray(hashes) ||
    sizes.length !== hashes.length
  ) {
    throw new BadParamsError(
      `invalid multipart index (expected as many sizes as hashes, got ${sizes?.length} and ${hashes?.length})`,
    );
  }
  hashes.forEach(checkHash);
  sizes.forEach(checkSize);
}

async function cancelSource(source: BlobSource): Promise<void> {
  if (source instanceof ReadableStream) await source.cancel();
}
