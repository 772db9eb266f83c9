/**
 * The blob store: content-addressed blobs over a catalog and a backend.
 *
 * @module
 */

import type { Backend, OpenedBlob } from "./backend.ts";
import type {
  BlobRef,
  Catalog,
  HashState,
  MultipartRegistry,
  PartRecord,
  UploadRecord,
} from "./catalog.ts";
import { concatStreams } from "./concat.ts";
import { checkHash } from "./digest.ts";
import {
  BadParamsError,
  ConflictError,
  CorruptBlobError,
  HashMismatchError,
  NotFoundError,
  RetryableError,
} from "./errors.ts";
import { type BlobStats, collectGarbage } from "./gc.ts";
import { type Hashing, startSha384 } from "./hashing.ts";
import {
  checkFinish,
  checkPartParams,
  checkPartPlacement,
  inferOffset,
  type MultipartIndex,
  multipartIndex,
  type Part,
  type UploadInfo,
} from "./multipart.ts";
import { LearnHashStream } from "./learn_hash.ts";
import { newBlobName, newUploadId } from "./names.ts";
import { pipeParts, type PutPartsResult } from "./part_pipeline.ts";
import { resolveRange } from "./range.ts";
import type { Refs } from "./refs.ts";
import { openState, sealState } from "./hash_state.ts";
import { sweepOrphans, type SweepStats } from "./sweep.ts";
import { type BlobSource, toReadableStream } from "./source.ts";
import { trustedStream, VerifyStream } from "./verify.ts";

/**
 * What a {@linkcode Store} is made of.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, type StoreOptions } from "@blobstore/blobstore";
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
  /**
   * Where to hash what is verified (default `"auto"`: on a worker thread
   * for bodies of 4 MiB or more, where the runtime has workers).
   */
  hashing?: Hashing;
}

/**
 * What to open: a byte range, and for a blob made of parts, its index.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { OpenOptions } from "@blobstore/blobstore";
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
 * What {@linkcode Store.stat} knows of a blob without reading it: its size,
 * whether it was put whole or finished from parts, and for the latter the
 * index to open it with.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { type BlobStat, MemoryBackend, MemoryCatalog, sha384, Store } from "@blobstore/blobstore";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const bytes = new TextEncoder().encode("hello");
 * const hash = await sha384(bytes);
 * await store.put(bytes, hash, bytes.length);
 * const stat: BlobStat = await store.stat(hash);
 * assert(stat.size === 5 && stat.kind === "single" && stat.index === undefined);
 * ```
 */
export interface BlobStat {
  /** The blob's size in bytes. */
  size: number;
  /** `"single"` for a blob put whole, `"multipart"` for one finished from parts. */
  kind: "single" | "multipart";
  /** For a multipart blob, the index to open it with. */
  index?: MultipartIndex;
}

/**
 * What a put did: `created` is true when this call stored the blob, false
 * when the blob was there already (or another put of it won a race).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, type PutResult, Store } from "@blobstore/blobstore";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const hash = "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b";
 * const first: PutResult = await store.put(new Uint8Array(), hash, 0);
 * const again: PutResult = await store.put(new Uint8Array(), hash, 0);
 * assert(first.created && !again.created);
 * ```
 */
export interface PutResult {
  /** Whether this put stored the blob (false: it was already stored). */
  created: boolean;
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
 * import { MemoryBackend, MemoryCatalog, sha384, Store } from "@blobstore/blobstore";
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
  /** Where this store hashes what it verifies. */
  readonly hashing: Hashing;

  /** Creates a store over `catalog` and `backend`. */
  constructor(options: StoreOptions) {
    this.catalog = options.catalog;
    this.backend = options.backend;
    this.minPartSize = options.minPartSize ?? 5 * 1024 * 1024;
    this.maxPartSize = options.maxPartSize ?? 2 ** 32 - 1;
    this.maxParts = options.maxParts ?? 400;
    this.hashing = options.hashing ?? "auto";
  }

  /**
   * Stores the `size` bytes of `source` as the blob `hash`, verifying both as
   * they stream, and says whether this call created the blob. See
   * {@linkcode Store.putAtTime}.
   */
  put(source: BlobSource, hash: string, size: number): Promise<PutResult> {
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
   *
   * Success is a promise: when this resolves, the blob is stored and
   * referenced. Of several puts of one new blob racing each other, exactly
   * one resolves with `created: true`. A GC whose cut-off is later than
   * `now` may remove an existing blob while its bytes are being verified
   * here; then the put throws `RetryableError` (nothing to undo; put again)
   * rather than claim a blob that is gone.
   */
  async putAtTime(
    source: BlobSource,
    hash: string,
    size: number,
    now: Date,
  ): Promise<PutResult> {
    checkHash(hash);
    checkSize(size);
    const verify = new VerifyStream(size, hash, { hashing: this.hashing });
    return await this.#put(toReadableStream(source), verify, now);
  }

  /**
   * Puts the blob `verify` checks, streaming `body` through it: the backend
   * gets its output, which it knows to be verified (see `verified`), so
   * the bytes are hashed once, where `this.hashing` says.
   */
  async #put(
    body: ReadableStream<Uint8Array>,
    verify: VerifyStream,
    now: Date,
  ): Promise<PutResult> {
    const { size, hash } = verify;
    if (await this.catalog.touchRef(hash, now)) {
      await body.pipeThrough(verify).pipeTo(new WritableStream());
      // The refresh above spares the blob from any GC whose cut-off is
      // before `now`, but not from one with a later cut-off that started
      // meanwhile. Look again: the reference still there (GC removes the
      // reference before the bytes) makes this put's success true now.
      if (!await this.catalog.getRef(hash)) {
        throw new RetryableError(
          `blob ${hash} was removed by a concurrent gc while its put was verifying; put it again`,
        );
      }
      return { created: false };
    }
    const name = newBlobName(hash);
    await this.backend.put(name, body.pipeThrough(verify), size, hash);
    return await this.#record({ hash, name, putTime: now, size });
  }

  /**
   * Records the verified object `ref.name` as the blob `ref.hash`, or,
   * when a concurrent put recorded its own copy first, refreshes that one
   * and drops ours. Ours goes only once the winner's reference is known to
   * be there: a winner removed meanwhile by GC is replaced by ours.
   */
  async #record(ref: BlobRef): Promise<PutResult> {
    for (;;) {
      let inserted: boolean;
      try {
        inserted = await this.catalog.insertRef(ref);
      } catch (err) {
        // The answer was lost, not necessarily the insert: a catalog that
        // died after applying it holds a reference to our bytes. Never
        // remove them here; if the reference is there, the put succeeded,
        // else they are an orphan for sweepOrphans, whose grace period and
        // reference check keep them while any reference may name them.
        const now = await this.catalog.getRef(ref.hash).catch(() => undefined);
        if (now?.name === ref.name) return { created: true };
        throw err;
      }
      if (inserted) return { created: true };
      // Refresh the winner's put time so that this put, too, counts for a
      // GC that started before it.
      if (await this.catalog.touchRef(ref.hash, ref.putTime)) {
        await this.backend.remove(ref.name);
        return { created: false };
      }
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
    const opened = await this.backend.get(ref.name, { start, end });
    if (opened.size !== ref.size) {
      // Cut short or grown in storage since it was verified: serving it
      // would pass off other bytes (or a shorter blob) as this hash.
      await opened.body.cancel().catch(() => {});
      throw new CorruptBlobError(
        `blob ${hash} is corrupt in storage (object "${ref.name}": expected ${ref.size} bytes, got ${opened.size})`,
      );
    }
    return opened;
  }

  /**
   * Tells the size and kind of the blob `hash` from the catalog alone,
   * without touching the backend: a blob put whole, else a multipart blob
   * published by hash in `registry` (default the catalog's own,
   * `catalog.multipart`; see `MultipartBlobs`) whose finished upload record
   * is still there. Throws `NotFoundError` when there is neither.
   */
  async stat(
    hash: string,
    options: { registry?: MultipartRegistry } = {},
  ): Promise<BlobStat> {
    checkHash(hash);
    const ref = await this.catalog.getRef(hash);
    if (ref) return { size: ref.size, kind: "single" };
    const registry = options.registry ?? this.catalog.multipart;
    const entry = await registry.get(hash);
    const upload = entry && await this.catalog.getUpload(entry.uploadId);
    const index = upload?.hash === hash ? multipartIndex(upload) : undefined;
    if (!index) throw new NotFoundError(`blob ${hash} not found`);
    return {
      size: index.sizes.reduce((sum, n) => sum + n, 0),
      kind: "multipart",
      index,
    };
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
  async newUpload(
    expires: Date,
    options: { info?: string } = {},
  ): Promise<string> {
    checkDate("expiry", expires);
    const { info } = options;
    if (info !== undefined && typeof info !== "string") {
      throw new BadParamsError(
        `invalid upload info (expected a string, got ${typeof info})`,
      );
    }
    const id = newUploadId();
    await this.catalog.insertUpload({
      id,
      expires,
      parts: [],
      ...(info !== undefined && { info }),
    });
    return id;
  }

  /**
   * Stores `bytes`, hashing them itself, and returns their hash and
   * whether this call created the blob: for callers that hold a body in
   * memory and do not know its hash (a part cut from a stream). The hash
   * is computed once, where `hashing` says, and not again by the backend.
   * With `expected`, bytes that hash otherwise are `HashMismatchError`,
   * and nothing is stored.
   */
  async putBytes(
    bytes: Uint8Array,
    options: { expected?: string } = {},
  ): Promise<PutResult & { hash: string }> {
    if (!(bytes instanceof Uint8Array)) {
      throw new BadParamsError(
        `invalid bytes (expected a Uint8Array, got ${typeof bytes})`,
      );
    }
    const { expected } = options;
    if (expected !== undefined) checkHash(expected, "expected hash");
    const { digest: hash } = await hashBytes(bytes, this.hashing);
    if (expected !== undefined && hash !== expected) {
      throw new HashMismatchError(expected, hash);
    }
    return { hash, ...await this.#putTrusted(bytes, hash, new Date()) };
  }

  /**
   * Stores the `size` bytes of `source`, whose hash the caller does not
   * know, as a single blob, hashing them once on their way to the backend,
   * and resolves to the hash and whether this call created the blob. Needs
   * a backend that can stage (`Backend.stage`: files, memory), which
   * writes the bytes under a temporary name and names the object once the
   * hash is known; {@linkcode Store.canStage} says whether this one can
   * (`MultipartBlobs.putUnknown` takes parts otherwise).
   *
   * With `expected`, bytes that hash otherwise are `HashMismatchError`; a
   * source that is not `size` bytes is `SizeMismatchError`; either way, as
   * when the source fails, nothing is recorded and the staged object is
   * removed. Success is the promise `put` makes.
   *
   * @example
   * ```ts
   * import assert from "node:assert";
   * import { MemoryBackend, MemoryCatalog, sha384, Store } from "@blobstore/blobstore";
   *
   * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
   * const bytes = new TextEncoder().encode("hashed on the way");
   * const { hash, created } = await store.putStaged(new Blob([bytes]).stream(), bytes.length);
   * assert(created && hash === await sha384(bytes));
   * ```
   */
  async putStaged(
    source: BlobSource,
    size: number,
    options: { expected?: string } = {},
  ): Promise<PutResult & { hash: string }> {
    const { expected } = options;
    if (expected !== undefined) checkHash(expected, "expected hash");
    checkSize(size);
    const stage = this.backend.stage?.bind(this.backend);
    if (!stage) {
      throw new BadParamsError(
        "this store's backend cannot stage objects (no Backend.stage); put the bytes in parts",
      );
    }
    const now = new Date();
    const learn = new LearnHashStream(size, this.hashing);
    const staged = await stage(toReadableStream(source).pipeThrough(learn));
    try {
      const hash = await learn.digest;
      if (expected !== undefined && hash !== expected) {
        throw new HashMismatchError(expected, hash);
      }
      // The bytes were hashed here, on their way: a blob already there
      // needs only its put time refreshed.
      if (await this.catalog.touchRef(hash, now)) {
        await staged.discard();
        return { hash, created: false };
      }
      const name = newBlobName(hash);
      await staged.commit(name);
      return {
        hash,
        ...await this.#record({ hash, name, putTime: now, size }),
      };
    } catch (err) {
      await staged.discard().catch(() => {});
      throw err;
    }
  }

  /** Whether {@linkcode Store.putStaged} works with this store's backend. */
  get canStage(): boolean {
    return typeof this.backend.stage === "function";
  }

  /**
   * Puts `bytes`, which this store has just hashed to `hash` itself, with
   * no second hash: a blob already there is only refreshed.
   */
  async #putTrusted(
    bytes: Uint8Array,
    hash: string,
    now: Date,
  ): Promise<PutResult> {
    if (await this.catalog.touchRef(hash, now)) return { created: false };
    const name = newBlobName(hash);
    const size = bytes.byteLength;
    await this.backend.put(name, trustedStream(bytes, hash), size, hash);
    return await this.#record({ hash, name, putTime: now, size });
  }

  /**
   * Stores the in-memory `bytes` as part `part` of upload `uploadId`,
   * starting at `offset` in the whole blob, hashing them itself, and
   * returns the part's hash. Unlike {@linkcode Store.putPart}, the bytes
   * are stored before the record, so replacing an incomplete part (see
   * `complete`) never leaves a record whose bytes are gone: a crash in
   * between leaves the old record, or the new one with its bytes stored.
   * A GC that removed the fresh blob before the record held it is caught
   * by looking again, and the bytes are put again.
   *
   * With `complete: false`, the part is recorded but left incomplete, its
   * bytes kept (GC spares what upload records name): a resumable upload's
   * tail, to be replaced by a longer part later. A complete part that
   * extends the upload's running hash advances it, as `putPart` does.
   * With `expected`, bytes that hash otherwise are `HashMismatchError`,
   * and nothing is stored (a one-part upload's part is its whole blob).
   */
  async putPartBytes(
    uploadId: string,
    part: number,
    bytes: Uint8Array,
    offset: number,
    options: { complete?: boolean; expected?: string } = {},
  ): Promise<{ hash: string }> {
    const { expected } = options;
    if (expected !== undefined) checkHash(expected, "expected hash");
    const complete = options.complete ?? true;
    const size = bytes.byteLength;
    checkPartParams(part, size, this);
    const upload = await this.#getUnfinished(uploadId, part);
    const resume = complete ? this.#resumable(upload, part) : undefined;
    const { digest: hash, state } = await hashBytes(
      bytes,
      this.hashing,
      resume,
    );
    if (expected !== undefined && hash !== expected) {
      throw new HashMismatchError(expected, hash);
    }
    await this.#storeHashedPart(upload, part, bytes, offset, {
      hash,
      state,
      complete,
    });
    return { hash };
  }

  /**
   * Stores the stream `source` as parts `first`, `first + 1`, … of upload
   * `uploadId`, each `partSize` bytes at `part * partSize`, complete, as
   * {@linkcode Store.putPartBytes} would, but hashing each part as its
   * bytes arrive (its own SHA-384, and the running hash of the upload when
   * the parts extend it) and storing it while the next one arrives.
   * `source` may have at most `size` bytes (else `SizeMismatchError`); a
   * full part ending at or after `holdFrom` bytes of it is not stored.
   *
   * Resolves to the number of the first part not stored and the bytes
   * after the stored parts (at most one part's: the caller stores them,
   * as an incomplete part or a short last one). A failure of `source` is
   * returned with what arrived, not thrown: the parts stored before it
   * stay (a resumable upload keeps them).
   *
   * @example
   * ```ts
   * import assert from "node:assert";
   * import { MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
   *
   * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend(), minPartSize: 4 });
   * const id = await store.newUpload(new Date(Date.now() + 3600_000));
   * const { next, hashes, rest } = await store.putParts(id, 0, new Blob(["abcdefghij"]).stream(), {
   *   partSize: 4,
   *   size: 10,
   * });
   * assert(next === 2 && rest.byteLength === 2);
   * const last = await store.putPartBytes(id, 2, rest, 8);
   * const parts = [...hashes.map((hash) => ({ hash })), last];
   * const { hash, index } = await store.finishUpload(id, parts);
   * const { body } = await store.open(hash, { index });
   * assert(await new Response(body).text() === "abcdefghij");
   * ```
   */
  async putParts(
    uploadId: string,
    first: number,
    source: ReadableStream<Uint8Array>,
    options: { partSize: number; size: number; holdFrom?: number },
  ): Promise<PutPartsResult> {
    const { partSize, size, holdFrom } = options;
    checkPartParams(first, partSize, this);
    checkSize(size);
    const upload = await this.#getUnfinished(uploadId, first);
    // This put's own view of the record: the parts it stores are added as
    // they complete, so that each is placed against the one before, and
    // no record is read again per part.
    const view = { ...upload, parts: [...upload.parts] };
    return await pipeParts(source, {
      first,
      partSize,
      size,
      holdFrom,
      hashing: this.hashing,
      resume: this.#resumable(upload, first),
      store: async ({ part, bytes, hash, state }) => {
        checkPartParams(part, partSize, this);
        const offset = part * partSize;
        await this.#storeHashedPart(view, part, bytes, offset, {
          hash,
          state,
          complete: true,
        });
        view.parts[part] = { hash, size: partSize, offset, complete: true };
      },
    });
  }

  /**
   * Stores `bytes`, which this store has hashed to `hash` itself, as part
   * `part` of `upload`: bytes before record (see `putPartBytes`), then
   * the part completed (unless `complete` is false) and the running hash
   * advanced to `state`, when there is one.
   */
  async #storeHashedPart(
    upload: UploadRecord,
    part: number,
    bytes: Uint8Array,
    offset: number,
    hashed: { hash: string; state?: Uint8Array; complete: boolean },
  ): Promise<void> {
    const { hash, state, complete } = hashed;
    const uploadId = upload.id;
    const size = bytes.byteLength;
    const existing = upload.parts[part];
    if (existing?.complete) {
      checkResentPart(part, existing, { hash, size, offset });
      return;
    }
    checkPartPlacement(upload.parts, part, size, offset, this.minPartSize);
    await this.#putTrusted(bytes, hash, new Date());
    const record = { hash, size, offset, complete: false };
    if (!await this.catalog.initPart(uploadId, part, record)) {
      const now = await this.#getUnfinished(uploadId, part);
      checkResentPart(part, now.parts[part]!, { hash, size, offset });
      return;
    }
    // The blob was put before the record named it: a GC with a later
    // cut-off may have removed it in between. The record holds it now, so
    // a put from here on is safe.
    if (!await this.catalog.getRef(hash)) {
      await this.#putTrusted(bytes, hash, new Date());
    }
    if (!complete) return;
    await this.#completePart(uploadId, part, hash);
    if (state) {
      await this.#advance(upload, part, { parts: part + 1, state });
    }
  }

  /**
   * Uploads part number `part` of upload `uploadId`: `size` bytes of
   * `source` starting at `offset` in the whole blob, with SHA-384 `hash`.
   * Pass `offset` 0 for a later part uploaded right after its predecessor
   * and it is inferred from that predecessor's record; with no predecessor
   * yet, 0 is a `BadParamsError` (the offset cannot be known). Re-sending a
   * complete part with the same hash, size and offset does nothing; with
   * anything else it is a `ConflictError`. An incomplete part (its put
   * failed, or its bytes were refused) may be sent again, even with
   * another hash: only a completed part is final.
   *
   * The part's record is created before its bytes are put, so GC keeps the
   * part's blob from then on, and a failed put leaves an incomplete record
   * that a retry completes, never a lost blob. Resolves to the completed
   * part's record (with the offset inferred, if it was).
   */
  async putPart(
    uploadId: string,
    part: number,
    source: BlobSource,
    size: number,
    offset: number,
    hash: string,
  ): Promise<PartRecord> {
    checkHash(hash);
    checkPartParams(part, size, this);
    const upload = await this.#getUnfinished(uploadId, part);
    const existing = upload.parts[part];
    if (existing?.complete) {
      checkResentPart(part, existing, { hash, size, offset });
      await cancelSource(source);
      return { ...existing };
    }
    offset = inferOffset(upload.parts, part, offset);
    checkPartPlacement(upload.parts, part, size, offset, this.minPartSize);
    const record = { hash, size, offset, complete: false };
    if (!await this.catalog.initPart(uploadId, part, record)) {
      const now = await this.#getUnfinished(uploadId, part);
      // Completed meanwhile by a concurrent request: the same part is fine.
      checkResentPart(part, now.parts[part]!, { hash, size, offset });
      await cancelSource(source);
      return { ...now.parts[part]! };
    }
    // A part that extends the hashed prefix of the upload (parts sent in
    // order) feeds the running hash of the whole blob as it is verified,
    // so that finishing reads nothing back.
    const resume = this.#resumable(upload, part);
    const verify = new VerifyStream(size, hash, {
      hashing: this.hashing,
      resume,
    });
    await this.#put(toReadableStream(source), verify, new Date());
    await this.#completePart(uploadId, part, hash);
    if (resume !== undefined) {
      const state = await verify.resumed;
      await this.#advance(upload, part, { parts: part + 1, state });
    }
    return { hash, size, offset, complete: true };
  }

  /**
   * The running hash state part `part` of `upload` resumes, when it is the
   * first part the state has not hashed (`null`: part 0, a fresh hash);
   * `undefined` when it is not, or the catalog cannot keep a state.
   */
  #resumable(
    upload: UploadRecord,
    part: number,
  ): Uint8Array | null | undefined {
    if (!this.catalog.advanceHashState) return undefined;
    const prefix = upload.hashState;
    if ((prefix?.parts ?? 0) !== part) return undefined;
    if (!prefix) return null;
    return openState(prefix.state);
  }

  /**
   * Saves `next` as the running hash of upload `uploadId` if the saved one
   * still covers `from` parts, then folds in the complete parts right
   * after it that arrived out of order (read back from the backend), as
   * long as no one else advances the state meanwhile. A step lost to a
   * race or to a finish only means a later finish reads more: every state
   * saved hashes exactly the parts it counts.
   */
  async #advance(
    upload: UploadRecord,
    from: number,
    next: HashState,
  ): Promise<void> {
    const catalog = this.catalog;
    const sealed = { parts: next.parts, state: sealState(next.state) };
    if (!await catalog.advanceHashState!(upload.id, from, sealed)) return;
    // Parts sent in order: when this part began, none was recorded after
    // it, so there is nothing to fold, and reading the whole record again
    // (large, with thousands of parts) would be wasted. A later part that
    // completed meanwhile is read back by the finish instead.
    if (upload.parts.length <= from + 1) return;
    // Folding is a saving for the finish, not part of this part's put,
    // which has succeeded: a part that fails to read back now (removed,
    // corrupt) is left for the finish to read, and to report.
    await this.#fold(upload.id).catch(() => {});
  }

  async #fold(uploadId: string): Promise<void> {
    const catalog = this.catalog;
    for (;;) {
      const upload = await catalog.getUpload(uploadId);
      if (!upload || upload.hash !== undefined) return;
      const start = upload.hashState?.parts ?? 0;
      let end = start;
      while (upload.parts[end]?.complete) end++;
      const resume = openState(upload.hashState?.state);
      if (end === start || !resume) return;
      const parts = upload.parts.slice(start, end) as PartRecord[];
      const { state } = await this.#hashStored(parts, start, { resume });
      const advanced = { parts: end, state: sealState(state!) };
      if (!await catalog.advanceHashState!(uploadId, start, advanced)) return;
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
      : await this.#wholeHash(upload);
    if (!await this.catalog.setUploadHash(uploadId, hash)) {
      // Another finish won the race (it computed the same hash from the same
      // parts), or the upload was removed meanwhile.
      const now = await this.#getUpload(uploadId);
      return { index, hash: now.hash ?? hash };
    }
    return { index, hash };
  }

  /**
   * The SHA-384 of the blob made of `upload`'s parts: resumed from its
   * running hash, which already covers the parts sent in order, and
   * completed by reading back only the parts after those. Without a usable
   * state, every part is read back.
   */
  async #wholeHash(upload: UploadRecord): Promise<string> {
    const parts = upload.parts as PartRecord[];
    const prefix = upload.hashState;
    const state = prefix && prefix.parts <= parts.length
      ? openState(prefix.state)
      : undefined;
    const from = state ? prefix!.parts : 0;
    const { digest } = await this.#hashStored(parts.slice(from), from, {
      resume: state,
    });
    return digest;
  }

  /**
   * Hashes the stored parts `parts` (numbered from `first`) in order,
   * resuming `options.resume` if given (else a plain hash), and returns the
   * digest and, when resumed, the state. Each part is checked against its
   * own hash and size on the way: a part found changed in storage is a
   * `CorruptBlobError`, never a whole hash computed from bad bytes.
   */
  async #hashStored(
    parts: readonly PartRecord[],
    first: number,
    options: { resume?: Uint8Array },
  ): Promise<{ digest: string; state?: Uint8Array }> {
    const total = parts.reduce((sum, part) => sum + part.size, 0);
    const whole = await startSha384({
      hashing: this.hashing,
      size: total,
      resume: options.resume,
    });
    try {
      for (let i = 0; i < parts.length; i++) {
        await this.#hashStoredPart(
          parts[i],
          first + i,
          whole.update.bind(whole),
        );
      }
      return await whole.finish();
    } catch (err) {
      whole.abort();
      throw err;
    }
  }

  async #hashStoredPart(
    part: PartRecord,
    number: number,
    update: (chunk: Uint8Array) => void | Promise<void>,
  ): Promise<void> {
    const { hash, size } = part;
    const ref = await this.catalog.getRef(hash);
    if (!ref) {
      throw new NotFoundError(`part ${number} (blob ${hash}) not found`);
    }
    const own = await startSha384({ hashing: this.hashing, size });
    let got = 0;
    try {
      const { body } = await this.backend.get(ref.name);
      for await (const chunk of body) {
        got += chunk.byteLength;
        if (got > size) break; // leaving the loop cancels the body
        await Promise.all([own.update(chunk), update(chunk)]);
      }
    } catch (err) {
      own.abort();
      throw err;
    }
    const actual = got === size ? (await own.finish()).digest : undefined;
    if (actual === undefined) own.abort();
    if (actual !== hash) {
      throw new CorruptBlobError(
        `part ${number} is corrupt in storage (object "${ref.name}": expected ${size} bytes hashing to ${hash}, got ${
          actual === undefined
            ? `${got > size ? "more than " : ""}${got} bytes`
            : `a hash of ${actual}`
        })`,
      );
    }
  }

  /** Returns the state of upload `uploadId`. */
  async uploadInfo(uploadId: string): Promise<UploadInfo> {
    const { parts, expires, hash, owner, info } = await this.#getUpload(
      uploadId,
    );
    return { parts, expires, hash, owner, info };
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
   * Removes the record of upload `uploadId`, finished or not, owned or not
   * (as Go's `RemoveUpload` does: an owner keeps what it needs through its
   * own references); its parts become garbage for the next GC unless
   * something else holds them. Removing an upload that is gone does
   * nothing.
   *
   * `isOwnedBy` guards an owned upload: when given, it is asked whether the
   * owner still uses the upload, and if so the record is kept and
   * `ConflictError` thrown.
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
    // The owner can be set once, between our read and our conditional
    // removal: then read again and decide on the owner as it now is.
    for (;;) {
      const upload = await this.catalog.getUpload(uploadId);
      if (!upload) return;
      if (
        upload.owner !== undefined && options.isOwnedBy &&
        await options.isOwnedBy(uploadId, upload.owner)
      ) {
        throw new ConflictError(
          `cannot remove upload "${uploadId}": in use by ${
            JSON.stringify(upload.owner)
          }`,
        );
      }
      if (await this.catalog.removeUpload(uploadId, upload.owner)) return;
    }
  }

  /** Removes every upload record whose expiry is before `now`. */
  async removeExpiredUploads(now: Date = new Date()): Promise<void> {
    checkDate("time", now);
    await this.catalog.removeExpiredUploads(now);
  }

  /** The record of upload `uploadId`, which must not be finished yet. */
  async #getUnfinished(uploadId: string, part: number): Promise<UploadRecord> {
    const upload = await this.#getUpload(uploadId);
    if (upload.hash !== undefined) {
      throw new ConflictError(
        `cannot upload part ${part}: upload "${uploadId}" already finished`,
      );
    }
    return upload;
  }

  /**
   * Marks part `part` complete with `hash`, or says why it cannot be: the
   * upload was removed, or the part was sent again with another hash while
   * this one was stored.
   */
  async #completePart(
    uploadId: string,
    part: number,
    hash: string,
  ): Promise<void> {
    if (await this.catalog.completePart(uploadId, part, hash)) return;
    const now = await this.catalog.getUpload(uploadId);
    if (!now) {
      throw new NotFoundError(
        `upload "${uploadId}" was removed while part ${part} was uploading`,
      );
    }
    throw new ConflictError(
      `part ${part} of upload "${uploadId}" was sent again with hash ${
        now.parts[part]?.hash
      } while this one (hash ${hash}) was uploading`,
    );
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
  hashes.forEach((hash) => checkHash(hash));
  sizes.forEach(checkSize);
}

/**
 * Checks a part sent again against its completed record: the same hash,
 * size and (when given: part 0, or a non-zero offset) offset is a no-op;
 * anything else would change a final part.
 */
function checkResentPart(
  part: number,
  existing: PartRecord,
  sent: { hash: string; size: number; offset: number },
): void {
  const offsetGiven = part === 0 || sent.offset !== 0;
  if (
    existing.hash !== sent.hash || existing.size !== sent.size ||
    (offsetGiven && existing.offset !== sent.offset)
  ) {
    throw new ConflictError(
      `part ${part} already uploaded with another hash, size or offset (expected hash ${existing.hash}, size ${existing.size}, offset ${existing.offset}; got hash ${sent.hash}, size ${sent.size}, offset ${
        offsetGiven ? sent.offset : "omitted"
      })`,
    );
  }
}

/**
 * The SHA-384 of `bytes`, and with `resume` (a state, or `null` for a
 * fresh hash) the resumable hash's state after them, computed side by side
 * (on two workers, where `hashing` puts them there).
 */
async function hashBytes(
  bytes: Uint8Array,
  hashing: Hashing,
  resume?: Uint8Array | null,
): Promise<{ digest: string; state?: Uint8Array }> {
  const size = bytes.byteLength;
  const run = async (resume?: Uint8Array | null) => {
    const job = await startSha384({ hashing, size, resume });
    try {
      await job.update(bytes);
      return await job.finish();
    } catch (err) {
      job.abort();
      throw err;
    }
  };
  const [plain, running] = await Promise.all([
    run(),
    resume === undefined ? undefined : run(resume),
  ]);
  return { digest: plain.digest, state: running?.state };
}

async function cancelSource(source: BlobSource): Promise<void> {
  if (source instanceof ReadableStream) await source.cancel();
}
