/**
 * A backend that keeps the bytes of blobs in Deno KV, as fixed-size chunks
 * below KV's 64 KiB value limit: blobs persist with no server at all, on a
 * laptop (a SQLite file) and on Deno Deploy (the hosted KV).
 *
 * Keys, under `[prefix]`:
 *
 * - `["object", name]`: a header (size, time, chunk count, write id),
 *   committed last, so an object is visible only once every chunk is in.
 * - `["objectChunk", writeId, index]`: the bytes, {@linkcode KV_CHUNK_SIZE}
 *   per chunk.
 * - `["objectPending", writeId]`: a marker for chunks that no header owns:
 *   a put in progress (touched by every batch it writes) or the chunks of a
 *   removed object being deleted. {@linkcode KvBackend.sweep} deletes the
 *   chunks of markers left by a put that crashed or a removal cut short.
 *
 * Needs `--unstable-kv` (or `"unstable": ["kv"]` in deno.json).
 *
 * @module
 */

import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
} from "../backend.ts";
import {
  BadParamsError,
  ConflictError,
  CorruptBlobError,
  NotFoundError,
} from "../errors.ts";
import { commit, retryBusy } from "./busy.ts";
import { atomicBatches, getManyInGroups, keySize } from "./limits.ts";
import { resolveRange } from "../range.ts";
import { DEFAULT_GRACE_MS } from "../sweep.ts";
import { verified } from "../verify.ts";

/** The bytes held by one chunk: KV's value limit (64 KiB). */
export const KV_CHUNK_SIZE = 65536;

/**
 * Chunks written per atomic operation: 10 × 64 KiB stays under KV's 800 KiB
 * total size per operation, with room for keys and the pending marker.
 */
const CHUNKS_PER_BATCH = 10;

/** Deletions per atomic operation (KV allows 1000 mutations). */
const DELETES_PER_BATCH = 500;

/**
 * Chunks a read fetches per round trip (1 MiB). Reads list a key range
 * rather than `getMany` the keys: a range scan is several times faster on
 * a local KV.
 */
const CHUNKS_PER_READ = 16;

interface ObjectHeader {
  size: number;
  modified: number;
  writeId: string;
  chunks: number;
}

interface PendingMarker {
  name: string;
  /** When the put last wrote a batch (or the removal began). */
  touched: number;
  /** How many chunks were committed under this write id. */
  chunks: number;
  /** Set once the chunks are garbage: a removed or replaced object, or a
   * put that a sweep declared abandoned. */
  dead?: boolean;
}

/** Options for a {@linkcode KvBackend}. */
export interface KvBackendOptions {
  /**
   * How long (ms) a put may go without writing a batch before a sweep may
   * treat it as crashed and delete its chunks. Default: `DEFAULT_GRACE_MS`
   * (one hour).
   */
  graceMs?: number;
}

/**
 * A {@linkcode Backend} in Deno KV. A put streams through `VerifyStream`
 * into 64 KiB chunks, written ten per atomic operation; the object's header
 * is committed last, once the content was verified, so a reader never sees
 * a partial object. A ranged read fetches only the chunks it needs.
 *
 * Chunks not (or no longer) owned by a header carry a pending marker, so a
 * put that crashed midway, or a removal cut short, is cleaned up by the
 * next {@linkcode KvBackend.sweep} (which `collect` runs; listing never
 * deletes anything).
 *
 * @example
 * ```ts
 * import { sha384 } from "@blobstore/blobstore";
 * import { KvBackend } from "@blobstore/blobstore/kv";
 *
 * const kv = await Deno.openKv(":memory:");
 * const backend = new KvBackend(kv);
 * const bytes = new TextEncoder().encode("hello");
 * await backend.put("greeting", new Blob([bytes]).stream(), 5, await sha384(bytes));
 * const { size, body } = await backend.get("greeting", { start: 1 });
 * console.assert(size === 5 && (await new Response(body).text()) === "ello");
 * kv.close();
 * ```
 */
export class KvBackend implements Backend {
  #kv: Deno.Kv;
  #prefix: string;
  #graceMs: number;

  /**
   * Uses `kv` under keys starting with `prefix`; a `KvCatalog` with the
   * same prefix uses other keys, so both can share one KV.
   */
  constructor(kv: Deno.Kv, prefix = "blobstore", options?: KvBackendOptions) {
    this.#kv = kv;
    this.#prefix = prefix;
    this.#graceMs = options?.graceMs ?? DEFAULT_GRACE_MS;
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    checkName(name);
    const header =
      (await retryBusy(() => this.#kv.get<ObjectHeader>(this.#objectKey(name))))
        .value;
    if (!header) throw new NotFoundError(`object "${name}" not found`);
    const { start, end } = resolveRange(range, header.size);
    return {
      size: header.size,
      body: this.#readChunks(name, header, start, end),
    };
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    checkName(name);
    const writer = await ChunkWriter.start(this.#kv, this.#prefix, name);
    let header: ObjectHeader;
    try {
      for await (
        const bytes of verified(body, size, hash)
      ) {
        await writer.write(bytes);
      }
      await writer.flush();
      header = {
        size,
        modified: Date.now(),
        writeId: writer.writeId,
        chunks: writer.chunks,
      };
    } catch (err) {
      await writer.discard().catch(() => {}); // else the next sweep does it
      throw err;
    }
    await this.#commit(name, header, writer);
  }

  /** See {@linkcode Backend.remove}. */
  async remove(name: string): Promise<void> {
    checkName(name);
    const key = this.#objectKey(name);
    for (;;) {
      const entry = await retryBusy(() => this.#kv.get<ObjectHeader>(key));
      if (!entry.value) return;
      // Hiding the object and marking its chunks as garbage is one step, so
      // a crash before the chunks are gone still leaves them to a sweep.
      const result = await commit(
        this.#kv.atomic().check(entry).delete(key)
          .set(this.#pendingKey(entry.value.writeId), deadMarker(name, entry)),
      );
      if (result.ok) {
        return await this.#deleteWrite(entry.value.writeId, entry.value.chunks);
      }
    }
  }

  /**
   * See {@linkcode Backend.removeMany}. The headers are read 10 per
   * `getMany` (ten of those in flight at once); up to 100 objects are then
   * hidden in one atomic operation, each checked against the header read
   * and its chunks handed to a dead marker, as {@linkcode KvBackend.remove}
   * does for one; last, the chunks and markers of the whole batch go, up
   * to 500 deletions per operation, each marker after its chunks. A batch
   * whose commit fails (an object of it replaced or removed meanwhile) is
   * done again one object at a time.
   */
  async removeMany(names: readonly string[]): Promise<void> {
    for (const name of names) checkName(name);
    for (const batch of this.#nameBatches(names)) {
      const entries = await this.#readHeaders(batch);
      const op = this.#kv.atomic();
      const hidden: ObjectHeader[] = [];
      for (const [i, entry] of entries.entries()) {
        if (!entry.value) continue; // absent: nothing to do
        const found = entry as Deno.KvEntry<ObjectHeader>;
        op.check(found).delete(found.key)
          .set(
            this.#pendingKey(found.value.writeId),
            deadMarker(batch[i], found),
          );
        hidden.push(found.value);
      }
      if (hidden.length === 0) continue;
      if (!(await commit(op)).ok) {
        for (const name of batch) await this.remove(name);
        continue;
      }
      await deleteWrites(this.#kv, this.#prefix, hidden);
    }
  }

  /**
   * Lists every complete object (the headers); chunks no header owns are
   * left to {@linkcode KvBackend.sweep}. See {@linkcode Backend.list}.
   */
  async *list(): AsyncIterable<BackendObject> {
    const headers = this.#kv.list<ObjectHeader>({
      prefix: [this.#prefix, "object"],
    });
    for await (const { key, value } of headers) {
      yield {
        name: key[key.length - 1] as string,
        size: value.size,
        modified: new Date(value.modified),
      };
    }
  }

  /**
   * Deletes the chunks of removed objects whose deletion was cut short,
   * and of puts that wrote nothing for `graceMs` (by default the grace
   * period given at construction): those crashed, or are so stalled that
   * their next batch will fail. Returns how many writes it cleaned up. See
   * {@linkcode Backend.sweep}.
   *
   * @example
   * ```ts
   * import { KvBackend } from "@blobstore/blobstore/kv";
   *
   * const kv = await Deno.openKv(":memory:");
   * console.assert(await new KvBackend(kv).sweep(0) === 0);
   * kv.close();
   * ```
   */
  async sweep(graceMs: number = this.#graceMs): Promise<number> {
    const cutoff = Date.now() - graceMs;
    const markers = this.#kv.list<PendingMarker>({
      prefix: [this.#prefix, "objectPending"],
    });
    let swept = 0;
    for await (const entry of markers) {
      const marker = entry.value;
      if (!marker.dead && marker.touched > cutoff) continue;
      if (!marker.dead) {
        // Declare the put dead first: its next batch (if it is alive after
        // all) then fails its check instead of adding chunks behind us.
        const result = await commit(
          this.#kv.atomic().check(entry)
            .set(entry.key, { ...marker, dead: true }),
        );
        if (!result.ok) continue; // it wrote meanwhile: alive
      }
      await this.#deleteWrite(
        entry.key[entry.key.length - 1] as string,
        marker.chunks,
      );
      swept++;
    }
    return swept;
  }

  /**
   * Makes a verified write visible: the header goes in and the pending
   * marker out in one step, checked against the marker (a sweep may have
   * declared this put dead) and against the header read (a replaced object
   * hands its chunks to a dead marker in the same step).
   */
  async #commit(
    name: string,
    header: ObjectHeader,
    writer: ChunkWriter,
  ): Promise<void> {
    const key = this.#objectKey(name);
    for (;;) {
      const previous = await retryBusy(() => this.#kv.get<ObjectHeader>(key));
      const op = this.#kv.atomic()
        .check(previous)
        .check(writer.marker)
        .set(key, header)
        .delete(this.#pendingKey(writer.writeId));
      if (previous.value) {
        op.set(
          this.#pendingKey(previous.value.writeId),
          deadMarker(name, previous as Deno.KvEntry<ObjectHeader>),
        );
      }
      if ((await commit(op)).ok) {
        if (previous.value) {
          await this.#deleteWrite(
            previous.value.writeId,
            previous.value.chunks,
          );
        }
        return;
      }
      if (
        (await retryBusy(() => this.#kv.get(writer.marker.key)))
          .versionstamp !==
          writer.marker.versionstamp
      ) {
        await writer.discard().catch(() => {});
        throw abandoned(name);
      }
      // Only the header changed (a concurrent put of the same name): retry.
    }
  }

  /** Deletes the chunks of write `writeId`, then its marker. */
  #deleteWrite(writeId: string, chunks: number): Promise<void> {
    return deleteWrites(this.#kv, this.#prefix, [{ writeId, chunks }]);
  }

  /**
   * Cuts `names` into batches one atomic operation can hide: at most
   * `MAX_CHECKS` objects and `MAX_KEY_BYTES` of keys
   * (each header key checked and deleted, a marker key set).
   */
  *#nameBatches(names: readonly string[]): Generator<string[]> {
    // Write ids are UUIDs: 36 characters.
    const markerSize = keySize(this.#pendingKey("0".repeat(36)));
    yield* atomicBatches(
      names,
      (name) => 2 * keySize(this.#objectKey(name)) + markerSize,
    );
  }

  /** Reads the headers of `names`, in order, several `getMany` at once. */
  #readHeaders(
    names: readonly string[],
  ): Promise<Deno.KvEntryMaybe<ObjectHeader>[]> {
    return getManyInGroups<ObjectHeader>(
      names.map((name) => this.#objectKey(name)),
      (group) => retryBusy(() => this.#kv.getMany<ObjectHeader[]>(group)),
    );
  }

  #readChunks(
    name: string,
    header: ObjectHeader,
    start: number,
    end: number,
  ): ReadableStream<Uint8Array> {
    const kv = this.#kv;
    const key = (i: number) => chunkKey(this.#prefix, header.writeId, i);
    let index = Math.floor(start / KV_CHUNK_SIZE);
    const last = Math.ceil(end / KV_CHUNK_SIZE); // exclusive
    // Chunks never change once written (each write has its own id), so a
    // scan resumed after a busy error reads the same bytes.
    const scan = () =>
      kv.list<Uint8Array>({ start: key(index), end: key(last) }, {
        batchSize: CHUNKS_PER_READ,
      });
    let chunks = scan();
    const next = () =>
      retryBusy(async () => {
        try {
          return await chunks.next();
        } catch (err) {
          chunks = scan();
          throw err;
        }
      });
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (index >= last) controller.close();
      },
      async pull(controller) {
        const { done, value: entry } = await next();
        if (done || entry.key[entry.key.length - 1] !== index) {
          throw new NotFoundError(
            `object "${name}" was removed while being read (chunk ${index} gone)`,
          );
        }
        const offset = index * KV_CHUNK_SIZE;
        const expected = Math.min(KV_CHUNK_SIZE, header.size - offset);
        if (entry.value.length !== expected) {
          throw new CorruptBlobError(
            `object "${name}" chunk ${index} is corrupt (expected ${expected} bytes, got ${entry.value.length})`,
          );
        }
        controller.enqueue(
          entry.value.subarray(
            Math.max(start - offset, 0),
            Math.min(end - offset, expected),
          ),
        );
        if (++index >= last) controller.close();
      },
    });
  }

  #objectKey(name: string): Deno.KvKey {
    return [this.#prefix, "object", name];
  }

  #pendingKey(writeId: string): Deno.KvKey {
    return [this.#prefix, "objectPending", writeId];
  }
}

/**
 * Cuts a stream of bytes into {@linkcode KV_CHUNK_SIZE} chunks and writes
 * them in batches, each batch one atomic operation that also touches the
 * pending marker (checked against its last versionstamp, so a sweep that
 * declared this put dead stops it at its next batch).
 */
class ChunkWriter {
  readonly writeId: string;
  /** The pending marker as last written. */
  marker: Deno.KvEntry<PendingMarker>;
  /** How many chunks are committed. */
  chunks = 0;
  #kv: Deno.Kv;
  #prefix: string;
  #batch: Uint8Array[] = [];
  #current = new Uint8Array(KV_CHUNK_SIZE);
  #filled = 0;

  private constructor(
    kv: Deno.Kv,
    prefix: string,
    writeId: string,
    marker: Deno.KvEntry<PendingMarker>,
  ) {
    this.#kv = kv;
    this.#prefix = prefix;
    this.writeId = writeId;
    this.marker = marker;
  }

  /** Writes the pending marker of a new put and returns its writer. */
  static async start(
    kv: Deno.Kv,
    prefix: string,
    name: string,
  ): Promise<ChunkWriter> {
    const writeId = crypto.randomUUID();
    const key = [prefix, "objectPending", writeId];
    const value: PendingMarker = { name, touched: Date.now(), chunks: 0 };
    const result = await commit(
      kv.atomic().check({ key, versionstamp: null })
        .set(key, value),
    );
    if (!result.ok) throw new Error(`write id ${writeId} collided`);
    return new ChunkWriter(kv, prefix, writeId, {
      key,
      value,
      versionstamp: result.versionstamp,
    });
  }

  /** Adds `bytes` (copied), committing each batch as it fills. */
  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      const n = Math.min(KV_CHUNK_SIZE - this.#filled, bytes.length - offset);
      this.#current.set(bytes.subarray(offset, offset + n), this.#filled);
      this.#filled += n;
      offset += n;
      if (this.#filled === KV_CHUNK_SIZE) {
        this.#batch.push(this.#current);
        this.#current = new Uint8Array(KV_CHUNK_SIZE);
        this.#filled = 0;
        if (this.#batch.length === CHUNKS_PER_BATCH) await this.#commit();
      }
    }
  }

  /** Commits what remains, the last (short) chunk included. */
  async flush(): Promise<void> {
    if (this.#filled > 0) {
      this.#batch.push(this.#current.slice(0, this.#filled));
      this.#filled = 0;
    }
    if (this.#batch.length > 0) await this.#commit();
  }

  /** Deletes what this put wrote, then its marker. */
  discard(): Promise<void> {
    return deleteWrites(this.#kv, this.#prefix, [this]);
  }

  async #commit(): Promise<void> {
    const op = this.#kv.atomic().check(this.marker);
    for (const [i, chunk] of this.#batch.entries()) {
      op.set(chunkKey(this.#prefix, this.writeId, this.chunks + i), chunk);
    }
    const value: PendingMarker = {
      ...this.marker.value,
      touched: Date.now(),
      chunks: this.chunks + this.#batch.length,
    };
    op.set(this.marker.key, value);
    const result = await commit(op);
    if (!result.ok) throw abandoned(value.name);
    this.marker = { ...this.marker, value, versionstamp: result.versionstamp };
    this.chunks = value.chunks;
    this.#batch = [];
  }
}

/**
 * Deletes the chunks of every write in `writes`, then its pending marker,
 * packing the deletions of several writes into each atomic operation (at
 * most {@linkcode DELETES_PER_BATCH} and `MAX_KEY_BYTES` of keys
 * each). Operations commit in order and a marker comes after its last
 * chunk: until the marker is gone, a sweep can finish the job.
 */
async function deleteWrites(
  kv: Deno.Kv,
  prefix: string,
  writes: readonly { writeId: string; chunks: number }[],
): Promise<void> {
  const keys = writeKeys(prefix, writes);
  for (const batch of atomicBatches(keys, keySize, DELETES_PER_BATCH)) {
    const op = kv.atomic();
    for (const key of batch) op.delete(key);
    await commit(op);
  }
}

/** The keys of `writes` in deletion order: each write's chunks, then its marker. */
function* writeKeys(
  prefix: string,
  writes: readonly { writeId: string; chunks: number }[],
): Generator<Deno.KvKey> {
  for (const { writeId, chunks } of writes) {
    for (let i = 0; i < chunks; i++) yield chunkKey(prefix, writeId, i);
    yield [prefix, "objectPending", writeId];
  }
}

function chunkKey(prefix: string, writeId: string, index: number): Deno.KvKey {
  return [prefix, "objectChunk", writeId, index];
}

function deadMarker(
  name: string,
  entry: Deno.KvEntry<ObjectHeader>,
): PendingMarker {
  return { name, touched: Date.now(), chunks: entry.value.chunks, dead: true };
}

function abandoned(name: string): ConflictError {
  return new ConflictError(
    `put of "${name}" was abandoned (expected its pending marker unchanged, got it swept as stale: the put idled longer than the grace period)`,
  );
}

/** KV keys are at most 2 KiB; a name this long is surely a mistake. */
function checkName(name: string): void {
  if (typeof name !== "string" || name.length === 0 || name.length > 1024) {
    throw new BadParamsError(
      `invalid object name (expected 1 to 1024 characters, got ${
        typeof name === "string" ? name.length : typeof name
      })`,
    );
  }
}
