/**
 * A backend in MongoDB GridFS (or any server that speaks its protocol, such
 * as FerretDB), through the driver's `GridFSBucket`, adapted to Web Streams.
 *
 * The layout is plain GridFS, as the Go charmstore wrote it: bucket
 * `<prefix>`, so collections `<prefix>.files` and `<prefix>.chunks`, and
 * the blob's name as the file's `filename`.
 *
 * Writes go through the bucket's upload stream. Reads query the chunks
 * collection directly, in batches of a bounded byte size: the bucket's
 * download stream lets its cursor ask for 1,000 chunks per batch, which
 * MongoDB caps at 16 MiB a reply but FerretDB v1 does not, so a whole blob
 * would arrive in memory at once.
 *
 * A failure of the driver or the server is thrown as a `MongoStoreError`
 * naming the method and the collection, the driver's error as its `cause`;
 * what the body stream or its verification fails with (`HashMismatchError`,
 * `SizeMismatchError`, the source's own error) passes through unchanged.
 *
 * @module
 */

import {
  type Collection,
  type Db,
  GridFSBucket,
  type GridFSBucketWriteStream,
  type GridFSChunk,
  type GridFSFile,
  ObjectId,
} from "mongodb";
import { Buffer } from "node:buffer";
import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
} from "../backend.ts";
import { CorruptBlobError, NotFoundError } from "../errors.ts";
import { mongoStep, mongoSteps } from "./error.ts";
import { resolveRange } from "../range.ts";
import { emptyStream } from "../source.ts";
import { DEFAULT_GRACE_MS } from "../sweep.ts";
import { verified } from "../verify.ts";

/** GridFS's customary chunk size, and the driver's and Go mgo's default. */
const DEFAULT_CHUNK_SIZE = 255 * 1024;

/** How many files ids a sweep looks up per query. */
const SWEEP_BATCH = 1000;

/** How many bytes of chunks a read asks the server for at a time. */
const DEFAULT_READ_BATCH_BYTES = 4 * 1024 * 1024;

/**
 * How many bytes of a put may be read and verified ahead of the chunk being
 * written, so hashing the next chunks overlaps the server's insert of this
 * one. Memory per put stays bounded by this plus one chunk.
 */
const READ_AHEAD_CHUNKS = 4;

/**
 * Options of a {@linkcode MongoBackend}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { MongoBackendOptions } from "@blobstore/blobstore/mongo";
 *
 * const options: MongoBackendOptions = { chunkSizeBytes: 1024 * 1024 };
 * assert.strictEqual(options.chunkSizeBytes, 1048576);
 * ```
 */
export interface MongoBackendOptions {
  /**
   * The size of the GridFS chunks of new files (default 255 KiB, as the
   * driver and Go's mgo). Each file records its own chunk size, so files
   * written with any size stay readable.
   */
  chunkSizeBytes?: number;
  /**
   * About how many bytes of chunks a read fetches per round trip (default
   * 4 MiB, at least one chunk): what a read holds in memory at a time.
   */
  readBatchBytes?: number;
  /**
   * How long a put may run, in milliseconds, before a sweep takes the
   * chunks of an upload without a files document for debris (default
   * `DEFAULT_GRACE_MS`, one hour). See {@linkcode MongoBackend.sweep}.
   */
  graceMs?: number;
}

/**
 * A {@linkcode Backend} that keeps each blob as a GridFS file of bucket
 * `<prefix>` in `db`, named by the blob's name.
 *
 * A put streams the body through `VerifyStream` into the bucket's upload
 * stream, one chunk document at a time; the files document that makes the
 * file visible is written only once every byte arrived and verified. A put
 * that fails or does not verify aborts the upload: its chunks are deleted
 * and no files document is ever written. A `get` reads the chunks a few
 * MiB at a time as the body is read, and with a range only the chunks that
 * hold it.
 *
 * Driver and server failures are thrown as `MongoStoreError` (the driver's
 * error as `cause`); verification failures as `HashMismatchError` and
 * `SizeMismatchError`.
 *
 * @example
 * ```ts ignore
 * import { MongoClient } from "mongodb";
 * import { sha384 } from "@blobstore/blobstore";
 * import { MongoBackend } from "@blobstore/blobstore/mongo";
 *
 * const client = await MongoClient.connect("mongodb://127.0.0.1:27017/");
 * const backend = new MongoBackend(client.db("charmstore"), "blobstore");
 * const bytes = new TextEncoder().encode("hello");
 * const hash = await sha384(bytes);
 * await backend.put(`${hash}-0123456789abcdef`, new Blob([bytes]).stream(), 5, hash);
 * const { body } = await backend.get(`${hash}-0123456789abcdef`, { start: 1 });
 * console.log(await new Response(body).text()); // "ello"
 * await client.close();
 * ```
 */
export class MongoBackend implements Backend {
  readonly #bucket: GridFSBucket;
  readonly #files: Collection<GridFSFile>;
  readonly #chunks: Collection<GridFSChunk>;
  readonly #chunkSize: number;
  readonly #readBatchBytes: number;
  readonly #graceMs: number;

  /**
   * Uses GridFS bucket `prefix` of `db` (collections `<prefix>.files` and
   * `<prefix>.chunks`). Nothing is sent to the server until the first call.
   */
  constructor(db: Db, prefix: string, options: MongoBackendOptions = {}) {
    this.#chunkSize = options.chunkSizeBytes ?? DEFAULT_CHUNK_SIZE;
    this.#readBatchBytes = options.readBatchBytes ?? DEFAULT_READ_BATCH_BYTES;
    this.#graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    this.#bucket = new GridFSBucket(db, {
      bucketName: prefix,
      chunkSizeBytes: this.#chunkSize,
    });
    this.#files = db.collection<GridFSFile>(`${prefix}.files`);
    this.#chunks = db.collection<GridFSChunk>(`${prefix}.chunks`);
  }

  /** Runs driver calls on the files collection as `MongoBackend.<method>`. */
  #filesStep<T>(method: string, op: () => Promise<T>): Promise<T> {
    return mongoStep(`MongoBackend.${method}`, this.#files.collectionName, op);
  }

  /** Runs driver calls on the chunks collection as `MongoBackend.<method>`. */
  #chunksStep<T>(method: string, op: () => Promise<T>): Promise<T> {
    return mongoStep(`MongoBackend.${method}`, this.#chunks.collectionName, op);
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    const file = await this.#filesStep(
      "get",
      () => this.#files.findOne({ filename: name }),
    );
    if (!file) throw new NotFoundError(`GridFS file "${name}" not found`);
    const size = Number(file.length);
    const { start, end } = resolveRange(range, size);
    if (start === end) return { size, body: emptyStream() };
    return { size, body: this.#readChunks(file, start, end) };
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    const upload = await this.#filesStep(
      "put",
      () => Promise.resolve(this.#bucket.openUploadStream(name)),
    );
    // Failures reach us through the write and end callbacks; without a
    // listener, the stream's "error" event would be an uncaught exception.
    upload.on("error", () => {});
    let ending = false;
    try {
      const checked = verified(body, size, hash)
        .pipeThrough(readAhead(READ_AHEAD_CHUNKS * this.#chunkSize));
      for await (const chunk of checked) {
        // Pieces of at most one chunk: each write then sends at most one
        // chunk insert and calls back only once it has settled, so when a
        // put fails no insert is still in flight to land after the abort
        // has deleted the chunks.
        for (let at = 0; at < chunk.length; at += this.#chunkSize) {
          const piece = chunk.subarray(at, at + this.#chunkSize);
          await this.#filesStep("put", () => write(upload, piece));
        }
      }
      ending = true;
      await this.#filesStep("put", () => end(upload));
    } catch (err) {
      await this.#discard(upload, ending);
      throw err;
    }
  }

  /** See {@linkcode Backend.remove}. */
  async remove(name: string): Promise<void> {
    // The files document first: once it is gone the file is invisible,
    // whatever happens to its chunks. Names are unique (the store never
    // puts one twice), so one files document at most. (No projection: the
    // document is small, and FerretDB v1 rejects one on findAndModify.)
    const file = await this.#filesStep(
      "remove",
      () => this.#files.findOneAndDelete({ filename: name }),
    );
    if (file) {
      await this.#chunksStep(
        "remove",
        () => this.#chunks.deleteMany({ files_id: file._id }),
      );
    }
  }

  /**
   * See {@linkcode Backend.removeMany}: one query for the files documents,
   * one delete of them, one of their chunks, in that order (as `remove`:
   * a file without its files document is invisible).
   */
  async removeMany(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const ids = await this.#filesStep("removeMany", async () => {
      const files = await this.#files
        .find({ filename: { $in: [...names] } }, { projection: { _id: 1 } })
        .toArray();
      const ids = files.map((file) => file._id);
      if (ids.length > 0) await this.#files.deleteMany({ _id: { $in: ids } });
      return ids;
    });
    if (ids.length === 0) return;
    await this.#chunksStep(
      "removeMany",
      () => this.#chunks.deleteMany({ files_id: { $in: ids } }),
    );
  }

  /**
   * Deletes the chunks of uploads that never got their files document and
   * started more than `graceMs` ago, and returns how many such uploads it
   * cleared. A put whose process died (or whose server died) midway leaves
   * exactly that: chunks no files document names, which no listing shows
   * and so no orphan sweep could find. A put still running has a files id
   * younger than the grace period (the id is an ObjectId made when the
   * upload starts, so it carries its start time), and is left alone: pick a
   * grace period longer than any put takes. See {@linkcode Backend.sweep};
   * `collect` calls it, and `list()` deletes nothing.
   */
  async sweep(graceMs: number = this.#graceMs): Promise<number> {
    const cutoff = Date.now() - graceMs;
    const old = (await this.#chunksStep(
      "sweep",
      () => this.#chunks.distinct("files_id"),
    )).filter((id) =>
      id instanceof ObjectId && id.getTimestamp().getTime() <= cutoff
    );
    let cleared = 0;
    for (let i = 0; i < old.length; i += SWEEP_BATCH) {
      const batch = old.slice(i, i + SWEEP_BATCH);
      const named = new Set(
        (await this.#filesStep(
          "sweep",
          () =>
            this.#files.find({ _id: { $in: batch } }, {
              projection: { _id: 1 },
            }).toArray(),
        )).map((file) => String(file._id)),
      );
      const dangling = batch.filter((id) => !named.has(String(id)));
      if (dangling.length === 0) continue;
      await this.#chunksStep(
        "sweep",
        () => this.#chunks.deleteMany({ files_id: { $in: dangling } }),
      );
      cleared += dangling.length;
    }
    return cleared;
  }

  /**
   * See {@linkcode Backend.list}: the files documents only; chunks without
   * one are left to {@linkcode MongoBackend.sweep}.
   */
  async *list(): AsyncIterable<BackendObject> {
    const files = mongoSteps(
      "MongoBackend.list",
      this.#files.collectionName,
      this.#files.find({}, {
        projection: { filename: 1, length: 1, uploadDate: 1 },
      }),
    );
    for await (const file of files) {
      yield {
        name: file.filename,
        size: Number(file.length),
        modified: file.uploadDate,
      };
    }
  }

  /**
   * Streams bytes `[start, end)` of `file` (`start < end`), pulling one
   * chunk per read from a cursor over just the chunks that hold them, with
   * the chunk sequence and sizes checked as GridFS readers do.
   */
  #readChunks(
    file: GridFSFile,
    start: number,
    end: number,
  ): ReadableStream<Uint8Array> {
    const chunkSize = file.chunkSize;
    const size = Number(file.length);
    const first = Math.floor(start / chunkSize);
    const last = Math.floor((end - 1) / chunkSize);
    const cursor = this.#chunks.find(
      { files_id: file._id, n: { $gte: first, $lte: last } },
      {
        sort: { n: 1 },
        batchSize: Math.max(1, Math.floor(this.#readBatchBytes / chunkSize)),
        promoteBuffers: true,
      },
    );
    let n = first;
    const closeCursor = () => this.#chunksStep("get", () => cursor.close());
    const fail = async (problem: string) => {
      await closeCursor();
      // A remove while we read deletes the chunks after the files document.
      const still = await this.#filesStep(
        "get",
        () => this.#files.findOne({ _id: file._id }),
      );
      if (!still) {
        return new NotFoundError(
          `GridFS file "${file.filename}" was removed while being read`,
        );
      }
      return new CorruptBlobError(`GridFS file "${file.filename}": ${problem}`);
    };
    return new ReadableStream({
      pull: async (controller) => {
        const chunk = await this.#chunksStep("get", () => cursor.next());
        if (!chunk || chunk.n !== n) {
          throw await fail(
            `chunk ${n} is missing (got ${
              chunk ? `chunk ${chunk.n}` : "none"
            })`,
          );
        }
        const data = chunk.data as Uint8Array;
        const expected = Math.min(chunkSize, size - n * chunkSize);
        if (data.byteLength !== expected) {
          throw await fail(
            `chunk ${n} has the wrong size (expected ${expected} bytes, got ${data.byteLength})`,
          );
        }
        const from = n === first ? start - n * chunkSize : 0;
        const to = n === last ? end - n * chunkSize : data.byteLength;
        controller.enqueue(
          new Uint8Array(data.buffer, data.byteOffset + from, to - from),
        );
        if (n++ === last) {
          controller.close();
          await closeCursor();
        }
      },
      cancel: async () => {
        await closeCursor();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Removes whatever a failed put wrote. Before `end` the driver's abort
   * does it (and makes the stream refuse further writes); once `end` has
   * begun the driver refuses to abort, and the files document may have been
   * written when the failure is one of reporting, so both go by hand.
   */
  async #discard(upload: GridFSBucketWriteStream, ending: boolean) {
    try {
      if (!ending) {
        await upload.abort();
        return;
      }
      upload.destroy();
      await this.#files.deleteOne({ _id: upload.id });
      await this.#chunks.deleteMany({ files_id: upload.id });
    } catch {
      // The put's own failure is the one to report. What is left is
      // invisible (no files document) or a whole verified file.
    }
  }
}

/** Writes `bytes` to `upload`, resolving once the write has settled. */
function write(
  upload: GridFSBucketWriteStream,
  bytes: Uint8Array,
): Promise<void> {
  // A Buffer view, not a copy: the stream copies it into its chunk buffer.
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return new Promise((resolve, reject) => {
    upload.write(buffer, (err) => err ? reject(err) : resolve());
  });
}

/** Ends `upload`, resolving once its files document has been written. */
function end(upload: GridFSBucketWriteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    upload.once("finish", resolve);
    upload.once("error", reject);
    upload.end();
  });
}

/**
 * A pass-through that holds up to `bytes` bytes, so the stages before it
 * (the source, verification) keep running while the consumer waits.
 */
function readAhead(bytes: number): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream(
    {},
    new ByteLengthQueuingStrategy({ highWaterMark: bytes }),
  );
}
