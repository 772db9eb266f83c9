/**
 * The tus 1.0.0 resumable upload protocol (https://tus.io/protocols/resumable-upload)
 * over the store: the core protocol and the `creation`,
 * `creation-with-upload`, `expiration`, `termination` and `checksum`
 * extensions. `createHandler` mounts it under its `tus` prefix; this
 * module answers the requests.
 *
 * A tus upload is a store multipart upload whose `info` says its length,
 * metadata and part size (see `state.ts`). A `PATCH` cuts the bytes at
 * fixed part boundaries: each part that fills is stored and completed
 * (`Store.putPartBytes`, which also advances the running SHA-384 of the
 * whole), and the bytes after the last boundary are stored as the
 * incomplete "tail" part, read back and put in front of the next `PATCH`'s
 * bytes. Bytes are stored before the record that names them, so every
 * byte an `Upload-Offset` acknowledged survives a crash, and a `PATCH` cut
 * mid-body keeps what arrived. When the last byte arrives, the upload is
 * finished from the running hash (nothing read back) and published like
 * `POST /blobs`' parts (`MultipartBlobs.publish`): `GET /blobs/{hash}`
 * serves it, and the final answer names it.
 *
 * @module
 */

import { sha384 } from "../digest.ts";
import {
  CorruptBlobError,
  HashMismatchError,
  NotFoundError,
} from "../errors.ts";
import { errorResponse, HttpError } from "../http/errors.ts";
import type { UploadInfo } from "../multipart.ts";
import { type MultipartBlobs, UNKNOWN_PART_SIZE } from "../multipart_blobs.ts";
import type { Store } from "../store.ts";
import { prepended, readBounded, TusBody } from "./body.ts";
import {
  CHECKSUM_ALGORITHMS,
  checksumMatches,
  parseUploadChecksum,
  type UploadChecksum,
} from "./checksum.ts";
import {
  checkTusResumable,
  headerCount,
  httpDate,
  isOffsetOctetStream,
  OFFSET_OCTET_STREAM,
  requiredCount,
  TUS_EXTENSIONS,
  TUS_VERSION,
} from "./headers.ts";
import {
  declaredSha384,
  formatMetadata,
  parseMetadata,
  withSha384,
} from "./metadata.ts";
import {
  encodeInfo,
  parseInfo,
  type TusInfo,
  tusPartSize,
  type TusState,
  tusState,
} from "./state.ts";

/**
 * How the tus endpoint is mounted (`createHandler`'s `tus` option).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { TusOptions } from "@blobstore/blobstore/http";
 *
 * const tus: TusOptions = { prefix: "/files/", expiresInMs: 7 * 24 * 3600_000 };
 * assert(tus.prefix === "/files/");
 * ```
 */
export interface TusOptions {
  /**
   * The path of the tus endpoint under the handler's own prefix (default
   * `"/tus/"`): uploads are created with `POST <prefix>` and live at
   * `<prefix><id>`. One or more segments of `[A-Za-z0-9._~-]`, the first
   * not one the service uses itself (`blobs`, `uploads`, `metrics`).
   */
  prefix?: string;
  /**
   * How long a new upload lives, in ms (default: the handler's
   * `uploadTtl`, a day). An upload past its `Upload-Expires` is answered
   * 410 until the server's reaper (or `collect`) removes its record, and
   * 404 after.
   */
  expiresInMs?: number;
  /**
   * The size an upload is cut into parts of, in bytes (default 8 MiB):
   * raised to the store's `minPartSize`, and for large uploads so that
   * the store's `maxParts` parts hold them. A `PATCH` holds about two
   * parts in memory (the part filling and the tail read back), and one
   * with `Upload-Checksum` up to {@linkcode CHECKSUM_BUFFER_PARTS} parts.
   */
  partSize?: number;
}

/** The default of {@linkcode TusOptions.prefix}. */
export const DEFAULT_TUS_PREFIX = "/tus/";

/** The first path segments the service's own routes use. */
const RESERVED_SEGMENTS = new Set(["blobs", "uploads", "metrics"]);

/**
 * The path segments of a tus prefix (`"/tus/"`, `"files"`,
 * `"/api/tus"`): one or more of `[A-Za-z0-9._~-]`, none `.` or `..`, the
 * first not one the service's own routes use. Anything else is a
 * `TypeError` saying so.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tusPathSegments } from "./handler.ts";
 *
 * assert.deepStrictEqual(tusPathSegments("/tus/"), ["tus"]);
 * assert.deepStrictEqual(tusPathSegments("api/tus"), ["api", "tus"]);
 * assert.throws(() => tusPathSegments("/"), TypeError);
 * assert.throws(() => tusPathSegments("/blobs/tus/"), TypeError);
 * ```
 */
export function tusPathSegments(prefix: string): string[] {
  const segments = typeof prefix === "string"
    ? prefix.replace(/^\/+|\/+$/g, "").split("/")
    : [];
  const valid = segments.length > 0 &&
    segments.every((s) => /^[A-Za-z0-9._~-]+$/.test(s) && !/^\.\.?$/.test(s));
  if (!valid || RESERVED_SEGMENTS.has(segments[0])) {
    throw new TypeError(
      `invalid tus prefix ${
        JSON.stringify(prefix)
      } (expected a path like /tus/: segments of [A-Za-z0-9._~-], the first not ${
        [...RESERVED_SEGMENTS].join(", ")
      })`,
    );
  }
  return segments;
}

/**
 * A `PATCH` carrying `Upload-Checksum` is held in memory whole until its
 * digest is checked (parts are stored as they fill, so nothing of it may
 * be stored before): it may be at most this many parts long (4 × 8 MiB
 * for uploads up to 3.2 GiB), else 413.
 */
export const CHECKSUM_BUFFER_PARTS = 4;

/** What the tus routes need from the handler that mounts them. */
export interface TusConfig {
  /** The store the uploads go to. */
  store: Store;
  /** Finishes and publishes the blobs uploads make. */
  blobs: MultipartBlobs;
  /** `Tus-Max-Size`: the largest `Upload-Length`. */
  maxBodySize: number;
  /** How long a body may stall, in ms, before a 408. */
  bodyIdleTimeout: number;
  /** How long a new upload lives, in ms. */
  expiresInMs: number;
  /** The least part size (default 8 MiB, `UNKNOWN_PART_SIZE`). */
  partSize?: number;
  /** The path of an upload, for `Location`. */
  uploadPath(id: string): string;
  /** The path of a blob, for `Content-Location`. */
  blobPath(hash: string): string;
}

/** What an upload id may be: as the `/uploads` routes take them. */
const UPLOAD_ID = /^[A-Za-z0-9._~-]{1,128}$/;

/** The SHA-384 of nothing: the blob of an upload of length 0. */
const EMPTY_SHA384 =
  "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b";

/** A tus upload as read from its record. */
interface Upload {
  id: string;
  record: UploadInfo;
  info: TusInfo;
  state: TusState;
}

/** Where a write left an upload: its offset, and its blob once finished. */
interface Written {
  offset: number;
  hash?: string;
}

/**
 * The tus endpoint: one method per request kind, each returning the
 * response or throwing an `HttpError` (or a store error) that the handler
 * turns into one. Requests writing to one upload are serialized in this
 * process: a second `PATCH` while one runs is a 423, nothing read.
 *
 * @example
 * ```ts ignore
 * const tus = new TusService(config);
 * const res = await tus.patch(req, id);
 * ```
 */
export class TusService {
  #config: TusConfig;
  /** The uploads a request of this process is writing. */
  #busy = new Set<string>();

  /**
   * Serves tus uploads as `config` says; a `TypeError` for an
   * `expiresInMs` or `partSize` that is not a positive integer.
   */
  constructor(config: TusConfig) {
    const { expiresInMs, partSize = UNKNOWN_PART_SIZE } = config;
    for (
      const [name, value] of [["expiresInMs", expiresInMs], [
        "partSize",
        partSize,
      ]] as const
    ) {
      if (!Number.isSafeInteger(value) || value <= 0) {
        throw new TypeError(
          `invalid tus ${name} (expected a positive integer, got ${value})`,
        );
      }
    }
    this.#config = config;
  }

  /** `OPTIONS`: what the server supports (204). */
  options(): Response {
    return new Response(null, {
      status: 204,
      headers: {
        "tus-version": TUS_VERSION,
        "tus-extension": TUS_EXTENSIONS.join(","),
        "tus-max-size": String(this.#config.maxBodySize),
        "tus-checksum-algorithm": Object.keys(CHECKSUM_ALGORITHMS).join(","),
      },
    });
  }

  /**
   * `POST` (creation, and creation-with-upload when the body is
   * `application/offset+octet-stream`): 201 with `Location` and
   * `Upload-Expires` (and `Upload-Offset` when bytes came along). Once
   * created, a failure of the bytes is answered with its own status but
   * carries the `Location` too: the upload exists, empty or with what was
   * kept.
   */
  async create(req: Request): Promise<Response> {
    checkTusResumable(req);
    const { store, maxBodySize } = this.#config;
    for (const name of ["Upload-Defer-Length", "Upload-Concat"]) {
      if (req.headers.has(name)) {
        throw new HttpError(
          400,
          "not_supported",
          `${name} is not supported (expected a single upload of known length, with Upload-Length)`,
        );
      }
    }
    const length = requiredCount(req, "Upload-Length");
    if (length > maxBodySize) {
      throw new HttpError(
        413,
        "too_large",
        `upload too large (Tus-Max-Size is ${maxBodySize} bytes, got Upload-Length ${length})`,
      );
    }
    const metadata = parseMetadata(req.headers.get("upload-metadata"));
    const expected = declaredSha384(metadata);
    const partSize = tusPartSize(
      length,
      store,
      this.#config.partSize ?? UNKNOWN_PART_SIZE,
    );
    if (partSize >= store.maxPartSize) {
      throw new HttpError(
        413,
        "too_large",
        `upload too large for this store (${store.maxParts} parts of ${partSize} bytes would be needed, each below ${store.maxPartSize})`,
      );
    }
    const declared = headerCount(req, "Content-Length");
    const withBody = isOffsetOctetStream(req.headers.get("content-type"));
    // Without a Content-Length, only reading tells: a server passes an
    // empty stream for a POST that sends nothing (curl -X POST).
    if (!withBody && !(await this.#emptyBody(req, declared))) {
      throw new HttpError(
        415,
        "unsupported_media_type",
        `a creation request carrying bytes must be Content-Type: ${OFFSET_OCTET_STREAM} (got ${
          JSON.stringify(req.headers.get("content-type")?.slice(0, 100) ?? null)
        })`,
      );
    }
    const checksum = withBody
      ? parseUploadChecksum(req.headers.get("upload-checksum"))
      : undefined;
    if (withBody && declared !== undefined && declared > length) {
      throw overLength(length, 0, declared);
    }
    if (length === 0 && expected !== undefined && expected !== EMPTY_SHA384) {
      throw mismatch("new", EMPTY_SHA384, expected, "not created");
    }
    const expires = new Date(Date.now() + this.#config.expiresInMs);
    const info: TusInfo = { v: 1, length, metadata, partSize };
    const id = await store.newUpload(expires, { info: encodeInfo(info) });
    const location = this.#config.uploadPath(id);
    const release = this.#lock(id);
    try {
      const upload: Upload = {
        id,
        record: { parts: [], expires, info: encodeInfo(info) },
        info,
        state: { complete: 0, offset: 0 },
      };
      const written = withBody
        ? await this.#append(req, upload, 0, declared, checksum)
        : length === 0
        ? { offset: 0, hash: await this.#settle(upload) }
        : undefined;
      const headers = await this.#headers(upload, written);
      headers.set("location", location);
      if (!written) headers.delete("upload-offset");
      return new Response(null, { status: 201, headers });
    } catch (err) {
      const res = errorResponse(err);
      if (!res) throw err;
      res.headers.set("location", location);
      return res;
    } finally {
      release();
    }
  }

  /**
   * `HEAD`: where the upload stands (`Upload-Offset`, `Upload-Length`,
   * `Upload-Metadata`, `Upload-Expires`, `Cache-Control: no-store`); once
   * finished, `Upload-Metadata` has the `sha384` of the blob and
   * `Content-Location` names it. An upload whose bytes are all there but
   * that a crash left unfinished is finished here.
   */
  async head(req: Request, id: string): Promise<Response> {
    checkTusResumable(req);
    const upload = await this.#load(id);
    let hash = upload.record.hash;
    const unsettled = hash === undefined
      ? upload.state.offset === upload.info.length
      : upload.record.owner === undefined;
    // A PATCH of this process holding it will settle it itself.
    if (unsettled && !this.#busy.has(id)) {
      const release = this.#lock(id);
      try {
        hash = await this.#finished(upload);
      } finally {
        release();
      }
    }
    const headers = await this.#headers(upload, {
      offset: upload.state.offset,
      hash,
    });
    return new Response(null, { status: 200, headers });
  }

  /**
   * `PATCH` with `Content-Type: application/offset+octet-stream` at
   * `Upload-Offset`: stores the bytes, 204 with the new `Upload-Offset`
   * (and, when they complete the upload, the blob's hash as `HEAD` gives
   * it). A `PATCH` whose body fails midway keeps what arrived.
   */
  async patch(req: Request, id: string): Promise<Response> {
    checkTusResumable(req);
    const type = req.headers.get("content-type");
    if (!isOffsetOctetStream(type)) {
      throw new HttpError(
        415,
        "unsupported_media_type",
        `a PATCH must be Content-Type: ${OFFSET_OCTET_STREAM} (got ${
          JSON.stringify(type?.slice(0, 100) ?? null)
        })`,
      );
    }
    const offset = requiredCount(req, "Upload-Offset");
    const declared = headerCount(req, "Content-Length");
    const checksum = parseUploadChecksum(req.headers.get("upload-checksum"));
    if (!UPLOAD_ID.test(id)) throw notFound(id);
    const release = this.#lock(id);
    try {
      const upload = await this.#load(id);
      const length = headerCount(req, "Upload-Length");
      if (length !== undefined && length !== upload.info.length) {
        throw new HttpError(
          400,
          "bad_request",
          `Upload-Length cannot change (expected ${upload.info.length}, got ${length})`,
        );
      }
      const written = await this.#append(
        req,
        upload,
        offset,
        declared,
        checksum,
      );
      return new Response(null, {
        status: 204,
        headers: await this.#headers(upload, written),
      });
    } finally {
      release();
    }
  }

  /**
   * `DELETE` (termination): removes an unfinished upload, 204; its bytes
   * become garbage for the next `gc`. A finished upload is a 409: its
   * blob is content-addressed, possibly shared with other uploads and
   * puts, and stays (`gc` decides what goes).
   */
  async terminate(req: Request, id: string): Promise<Response> {
    checkTusResumable(req);
    const upload = await this.#load(id);
    if (
      upload.record.hash !== undefined ||
      upload.state.offset === upload.info.length
    ) {
      throw finishedConflict(upload, "cannot be terminated");
    }
    // An owner means it was finished and published meanwhile: 409 too.
    await this.#config.store.removeUpload(id, { isOwnedBy: () => true });
    return new Response(null, { status: 204 });
  }

  /**
   * `POST` on an upload with `X-HTTP-Method-Override: PATCH` or `DELETE`,
   * for clients that cannot send those methods; anything else is a 405.
   */
  override(req: Request, id: string): Promise<Response> {
    const method = req.headers.get("x-http-method-override")?.trim()
      .toUpperCase();
    if (method === "PATCH") return this.patch(req, id);
    if (method === "DELETE") return this.terminate(req, id);
    throw new HttpError(
      405,
      "method_not_allowed",
      `POST on an upload needs X-HTTP-Method-Override: PATCH or DELETE (got ${
        JSON.stringify(method?.slice(0, 50) ?? null)
      })`,
      { allow: "HEAD, PATCH, DELETE, OPTIONS, POST" },
    );
  }

  /** Marks `id` as being written, or answers 423 when it already is. */
  #lock(id: string): () => void {
    if (this.#busy.has(id)) {
      throw new HttpError(
        423,
        "locked",
        `upload ${id} is being written by another request (expected one request at a time; retry when it ends)`,
        { "retry-after": "1" },
      );
    }
    this.#busy.add(id);
    return () => this.#busy.delete(id);
  }

  /** Reads tus upload `id`: 404 when there is none, 410 once expired. */
  async #load(id: string): Promise<Upload> {
    if (!UPLOAD_ID.test(id)) throw notFound(id);
    const { store } = this.#config;
    let record: UploadInfo;
    try {
      record = await store.uploadInfo(id);
    } catch (err) {
      if (err instanceof NotFoundError) throw notFound(id);
      throw err;
    }
    const info = parseInfo(record.info);
    if (!info) throw notFound(id); // an upload of the /uploads routes
    if (record.expires.getTime() <= Date.now()) {
      throw new HttpError(
        410,
        "gone",
        `tus upload ${id} expired at ${record.expires.toISOString()}`,
      );
    }
    const state = await tusState(
      record.parts,
      info,
      async (hash) => (await store.catalog.getRef(hash))?.size,
    );
    return { id, record, info, state };
  }

  /**
   * Writes the body of `req` to `upload` at `offset`, after the checks a
   * `PATCH` needs (a finished upload takes an empty `PATCH` at its end
   * only; a wrong offset is a 409; a body longer than the room left, a
   * 400; a checksum, checked on the whole body first).
   */
  async #append(
    req: Request,
    upload: Upload,
    offset: number,
    declared: number | undefined,
    checksum: UploadChecksum | undefined,
  ): Promise<Written> {
    const { id, info, state } = upload;
    const { length, partSize } = info;
    const hash = await this.#finished(upload);
    if (hash !== undefined) {
      if (offset === length && await this.#emptyBody(req, declared)) {
        return { offset: length, hash };
      }
      throw finishedConflict(upload, "takes no more bytes");
    }
    if (offset !== state.offset) {
      throw new HttpError(
        409,
        "conflict",
        `wrong Upload-Offset for upload ${id} (expected ${state.offset}, got ${offset})`,
        { "upload-offset": String(state.offset) },
      );
    }
    const room = length - offset;
    if (declared !== undefined && declared > room) {
      throw overLength(length, offset, declared);
    }
    const body = new TusBody(req, {
      limit: room,
      idleTimeout: this.#config.bodyIdleTimeout,
      describe: (got) =>
        `at most ${room} bytes at offset ${offset} of Upload-Length ${length}, got ${got}`,
    });
    if (!checksum) return await this.#write(upload, body.stream, body);
    const max = CHECKSUM_BUFFER_PARTS * partSize;
    const why =
      `a PATCH with Upload-Checksum is held in memory until it is checked, up to ${CHECKSUM_BUFFER_PARTS} parts of ${partSize} bytes; send smaller PATCHes`;
    if (declared !== undefined && declared > max) {
      throw new HttpError(
        413,
        "too_large",
        `request body too large (maximum ${max} bytes: ${why}; got ${declared})`,
      );
    }
    const bytes = await readBounded(body.stream, max, why);
    if (!await checksumMatches(checksum, bytes)) {
      throw new HttpError(
        460,
        "checksum_mismatch",
        `Upload-Checksum mismatch: the ${bytes.length} bytes sent do not have the ${checksum.algorithm} digest given; nothing of them was kept (the upload is still at offset ${offset})`,
        { "upload-offset": String(offset) },
      );
    }
    return await this.#write(upload, new Blob([bytes]).stream(), body);
  }

  /**
   * Stores `source`, which continues `upload` at its offset, part by part
   * (see the module documentation), and finishes the upload when it is
   * complete. When `body` fails midway, what arrived is kept and the
   * failure thrown on; a body over its limit keeps only the parts it
   * filled before the excess showed.
   */
  async #write(
    upload: Upload,
    source: ReadableStream<Uint8Array>,
    body: TusBody,
  ): Promise<Written> {
    const { store } = this.#config;
    const { id, info, state } = upload;
    const { length, partSize } = info;
    const tail = state.tail && await this.#readTail(state.tail);
    // Full parts are hashed as they arrive and stored while the next one
    // does; the rest is the bytes of part `part` not stored complete on
    // the way: what remains of the body, or a part that ends the upload,
    // which waits for the end of the body (a byte more would make it a
    // 400).
    const start = state.complete * partSize;
    const { next: part, rest, failure } = await store.putParts(
      id,
      state.complete,
      prepended(tail, source),
      { partSize, size: length - start, holdFrom: length - start },
    );
    // Only the body fails the source; the store's failures are thrown.
    if (failure !== undefined && failure !== body.error) throw failure;
    const at = part * partSize;
    if (body.overLength) {
      const offset = part > state.complete ? at : state.offset;
      const err = failure as HttpError;
      throw new HttpError(
        err.status,
        err.code,
        `${err.message}; the parts filled before were kept: the upload is at offset ${offset}`,
        { "upload-offset": String(offset) },
      );
    }
    let offset = at;
    try {
      if (rest.byteLength > 0) {
        offset = at + rest.byteLength;
        if (offset === length) {
          await this.#putLast(upload, part, rest);
        } else if (part > state.complete || offset > state.offset) {
          // The new tail, replacing the old one (read back in front).
          await store.putPartBytes(id, part, rest, at, { complete: false });
        }
      }
      const hash = offset === length ? await this.#settle(upload) : undefined;
      if (failure === undefined) return { offset, hash };
    } catch (err) {
      if (failure === undefined) throw err;
      // Every byte arrived before the body failed, and the upload was
      // refused for its hash and removed: that outcome outranks the
      // failure (a client that stalled still reads the answer).
      if (err instanceof HttpError && err.code === "hash_mismatch") throw err;
      // The client is gone; what could not be kept is what it resends.
    }
    throw failure;
  }

  /**
   * The blob of `upload` once it has every byte: finished (and published)
   * already, or finished now (a full last part that a crash left
   * incomplete is completed first); `undefined` while bytes are missing.
   */
  async #finished(upload: Upload): Promise<string | undefined> {
    const { record, info, state } = upload;
    if (record.hash !== undefined) {
      // Published again: a crash may have come between finish and publish.
      return record.owner === undefined
        ? await this.#settle(upload)
        : record.hash;
    }
    if (state.offset < info.length) return undefined;
    if (state.tail) {
      const bytes = await this.#readTail(state.tail);
      await this.#putLast(upload, state.complete, bytes);
    }
    return await this.#settle(upload);
  }

  /**
   * Stores the last part of `upload`. When it is part 0, it is the whole
   * blob, stored under its own hash as it is: a `sha384` in the metadata
   * is checked first, so a refused one-part upload stores nothing (a
   * larger one leaves parts that are not the blob, garbage for `gc`).
   */
  async #putLast(
    upload: Upload,
    part: number,
    bytes: Uint8Array,
  ): Promise<void> {
    const { store } = this.#config;
    const { id, info } = upload;
    const expected = part === 0 ? declaredSha384(info.metadata) : undefined;
    try {
      await store.putPartBytes(id, part, bytes, part * info.partSize, {
        expected,
      });
    } catch (err) {
      if (!(err instanceof HashMismatchError)) throw err;
      await store.removeUpload(id).catch(() => {});
      throw mismatch(id, err.actual, err.expected, "terminated");
    }
  }

  /**
   * Finishes the complete `upload` from the running hash and publishes its
   * blob (`MultipartBlobs.publish`, the record kept for `HEAD` until it
   * expires, or for as long as it serves the blob), returning the hash. A
   * `sha384` in the metadata that differs is a 422, and the upload is
   * removed: nothing registered, its parts garbage.
   */
  async #settle(upload: Upload): Promise<string> {
    const { store, blobs } = this.#config;
    const { id, info } = upload;
    const expected = declaredSha384(info.metadata);
    if (info.length === 0) await store.putBytes(new Uint8Array(0));
    const { parts } = await store.uploadInfo(id);
    try {
      const published = await blobs.publish(
        id,
        parts.map((part) => ({ hash: part!.hash })),
        { expected, keep: true },
      );
      return published.hash;
    } catch (err) {
      if (!(err instanceof HashMismatchError)) throw err;
      await store.removeUpload(id).catch(() => {});
      throw mismatch(id, err.actual, err.expected, "terminated");
    }
  }

  /** The bytes of a tail, checked against its hash. */
  async #readTail(tail: { hash: string; size: number }): Promise<Uint8Array> {
    let bytes: Uint8Array;
    try {
      const { body } = await this.#config.store.open(tail.hash);
      bytes = new Uint8Array(await new Response(body).arrayBuffer());
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      throw new CorruptBlobError(
        `the tail of a tus upload (blob ${tail.hash}) is gone from storage`,
      );
    }
    if (bytes.byteLength !== tail.size || await sha384(bytes) !== tail.hash) {
      throw new CorruptBlobError(
        `the tail of a tus upload is corrupt in storage (expected ${tail.size} bytes hashing to ${tail.hash}, got ${bytes.byteLength} bytes that do not)`,
      );
    }
    return bytes;
  }

  /**
   * Whether a request carries no byte: its `Content-Length` says 0, or it
   * has no body, or its body ends before its first byte (of which it
   * reads one chunk at most).
   */
  async #emptyBody(
    req: Request,
    declared: number | undefined,
  ): Promise<boolean> {
    if (declared !== undefined) return declared === 0;
    if (!req.body) return true;
    const body = new TusBody(req, {
      limit: 0,
      idleTimeout: this.#config.bodyIdleTimeout,
      describe: (got) => `none, got ${got}`,
    });
    try {
      await new Response(body.stream).arrayBuffer();
      return true;
    } catch (err) {
      if (body.overLength) return false;
      throw err;
    }
  }

  /**
   * The headers of an answer on `upload` after `written`: `Upload-Offset`,
   * `Upload-Length`, `Upload-Metadata`, `Upload-Expires` (not for a
   * record the service keeps until `gc` releases it) and, once finished,
   * the blob in `Upload-Metadata` (`sha384`) and `Content-Location`.
   */
  async #headers(upload: Upload, written?: Written): Promise<Headers> {
    const { info } = upload;
    const hash = written?.hash;
    // Finishing changed the record (its owner and expiry): read it again.
    const record = hash === undefined
      ? upload.record
      : await this.#config.store.uploadInfo(upload.id);
    const headers = new Headers({
      "upload-offset": String(written?.offset ?? upload.state.offset),
      "upload-length": String(info.length),
      "cache-control": "no-store",
    });
    if (record.owner === undefined) {
      headers.set("upload-expires", httpDate(record.expires));
    }
    const metadata = hash === undefined
      ? info.metadata
      : withSha384(info.metadata, hash);
    if (metadata.length > 0) {
      headers.set("upload-metadata", formatMetadata(metadata));
    }
    if (hash !== undefined) {
      headers.set("content-location", this.#config.blobPath(hash));
    }
    return headers;
  }
}

function notFound(id: string): HttpError {
  return new HttpError(
    404,
    "not_found",
    `tus upload ${
      JSON.stringify(id.length > 120 ? `${id.slice(0, 120)}…` : id)
    } not found`,
  );
}

function overLength(length: number, offset: number, got: number): HttpError {
  return new HttpError(
    400,
    "upload_length_exceeded",
    `request body too long for the upload (expected at most ${
      length - offset
    } bytes at offset ${offset} of Upload-Length ${length}, got ${got}); nothing was read`,
    { "upload-offset": String(offset) },
  );
}

function finishedConflict(upload: Upload, what: string): HttpError {
  const hash = upload.record.hash;
  return new HttpError(
    409,
    "conflict",
    `tus upload ${upload.id} is complete and ${what} (its ${upload.info.length} bytes ${
      hash === undefined ? "are all there" : `are the blob ${hash}`
    }; the blob stays, content-addressed and shared, until gc removes it)`,
    { "upload-offset": String(upload.info.length) },
  );
}

function mismatch(
  id: string,
  actual: string,
  expected: string,
  outcome: string,
): HttpError {
  return new HttpError(
    422,
    "hash_mismatch",
    `upload ${id} hashes to ${actual}, not to the sha384 of its Upload-Metadata (${expected}): ${outcome}`,
  );
}
