/**
 * The backend seam: where the bytes of blobs live.
 *
 * @module
 */

/**
 * A blob opened for reading: its whole size and a stream of the requested
 * bytes. Cancelling `body` releases whatever the read holds (requests, file
 * handles, cursors).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { OpenedBlob } from "@blobstore/blobstore";
 *
 * const blob: OpenedBlob = { size: 3, body: new Blob(["abc"]).stream() };
 * assert((await new Response(blob.body).text()) === "abc");
 * ```
 */
export interface OpenedBlob {
  /** The size of the whole blob in bytes, whatever range was asked for. */
  size: number;
  /** The bytes in `[start, end)` of the blob (all of them without a range). */
  body: ReadableStream<Uint8Array>;
}

/**
 * A byte range: `start` inclusive (default 0), `end` exclusive (default the
 * size of the blob). Out-of-range values are clamped to the blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { ByteRange } from "@blobstore/blobstore";
 *
 * const firstKiB: ByteRange = { start: 0, end: 1024 };
 * assert(firstKiB.end === 1024);
 * ```
 */
export interface ByteRange {
  /** The first byte to read, counted from 0. */
  start?: number;
  /** One past the last byte to read. */
  end?: number;
}

/**
 * One object held by a backend, as listed by {@linkcode Backend.list}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BackendObject } from "@blobstore/blobstore";
 *
 * const obj: BackendObject = { name: "x", size: 3, modified: new Date() };
 * assert(obj.size === 3);
 * ```
 */
export interface BackendObject {
  /** The name the store gave the object. */
  name: string;
  /** Its size in bytes. */
  size: number;
  /** When it was written. */
  modified: Date;
}

/**
 * Where the bytes of blobs live. Names are opaque strings chosen by the
 * store (the hash, a dash and random hex); a backend stores each name once
 * and never sees the same name put twice.
 *
 * Implementations: `MemoryBackend` here, and the MongoDB GridFS, Swift, file
 * and Deno KV backends in their own subpath exports.
 *
 * @example A backend that wraps another and counts puts
 * ```ts
 * import assert from "node:assert";
 * import { type Backend, MemoryBackend } from "@blobstore/blobstore";
 *
 * const inner = new MemoryBackend();
 * let puts = 0;
 * const counting: Backend = {
 *   get: (name, range) => inner.get(name, range),
 *   put: (name, body, size, hash) => (puts++, inner.put(name, body, size, hash)),
 *   remove: (name) => inner.remove(name),
 *   list: () => inner.list(),
 * };
 * assert(puts === 0 && typeof counting.put === "function");
 * ```
 */
export interface Backend {
  /**
   * Opens the object `name`, reading only the bytes in `range`.
   * Throws `NotFoundError` when there is no such object.
   */
  get(name: string, range?: ByteRange): Promise<OpenedBlob>;
  /**
   * Stores `body` as `name`, checking as it streams that it is exactly
   * `size` bytes with SHA-384 `hash` (pipe it through `VerifyStream`).
   * On a mismatch it throws `SizeMismatchError` or `HashMismatchError`; on
   * a mismatch or a failure of `body` it stores nothing: no visible object,
   * no partial one left behind.
   */
  put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void>;
  /** Removes the object `name`; removing an absent object is not an error. */
  remove(name: string): Promise<void>;
  /**
   * Optional batch form of `remove`, for GC: removes every object in
   * `names` in as few round trips as the backend allows; absent ones are
   * not an error.
   */
  removeMany?(names: readonly string[]): Promise<void>;
  /**
   * Lists every complete object the backend holds, in no particular order,
   * for the orphan sweep and for tests; listing changes nothing. A backend
   * may also list what a put killed midway left behind, under the name it
   * was being put as, when `remove` of that name clears it (SwiftBackend
   * does this for segments without a manifest). Optional for third-party
   * backends.
   */
  list?(): AsyncIterable<BackendObject>;
  /**
   * Optional, for backends with debris that no `list` shows: clears what
   * puts killed midway (or removals cut short) left behind, such as
   * temporary files or chunks that no object owns, once older than
   * `graceMs` milliseconds (default: the backend's own grace period,
   * usually `DEFAULT_GRACE_MS`, an hour). A put still running is younger
   * than that and is left alone, so pick a period longer than any put
   * takes. Never touches a complete object. Returns how many leftovers
   * (one per put or removal) it cleared. GC's `collect` calls it.
   */
  sweep?(graceMs?: number): Promise<number>;
  /**
   * Optional, for backends whose storage serves objects over HTTP itself:
   * a URL with which anyone may GET the object `name` (bytes as stored,
   * ranges with a `Range` header) straight from the storage, without
   * credentials, until it expires `expiresIn` seconds from now (a positive
   * integer; the storage refuses it afterwards). It does not check that
   * the object exists. Absent on backends that cannot (memory, file, KV,
   * GridFS; Swift without a TempURL key). `createHandler`'s `redirect`
   * uses it. `S3Backend` presigns; `SwiftBackend` makes TempURLs.
   */
  signedUrl?(name: string, options: { expiresIn: number }): Promise<string>;
  /**
   * Optional, for backends that can give an object its name after writing
   * it (a file's rename): stores `body` durably under a temporary name and
   * resolves, once it has ended, to the object staged, for the store to
   * name by the hash it learned on the way (`POST /blobs`: one write and
   * one hash, where backends without it take parts, each hashed twice). A
   * failure of `body` leaves nothing. A staged object never named is
   * debris for `sweep`, like a put killed midway. `FileBackend` and
   * `MemoryBackend` have it.
   */
  stage?(body: ReadableStream<Uint8Array>): Promise<StagedObject>;
}

/**
 * An object a backend has written under a temporary name (see
 * {@linkcode Backend.stage}).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend } from "@blobstore/blobstore";
 *
 * const backend = new MemoryBackend();
 * const staged = await backend.stage(new Blob(["abc"]).stream());
 * await staged.commit("x");
 * assert((await new Response((await backend.get("x")).body).text()) === "abc");
 * ```
 */
export interface StagedObject {
  /** Gives the object its name: from then on it is `get(name)`'s. */
  commit(name: string): Promise<void>;
  /** Removes the object. */
  discard(): Promise<void>;
}
