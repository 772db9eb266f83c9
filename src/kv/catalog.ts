/**
 * A catalog in Deno KV: persistent, shared by every process that opens the
 * same KV (a local SQLite file, or the hosted KV on Deno Deploy).
 *
 * Every conditional step is one `kv.atomic()` whose checks are the
 * versionstamps of the records the condition was decided on, so concurrent
 * processes get the same guarantees as single-document MongoDB updates.
 *
 * Keys, under `[prefix]`:
 *
 * - `["ref", hash]`: a reference (`name`, `size`, `putTime` in ms).
 * - `["refPutTime", putTimeMs, hash]`: the same reference again, ordered by
 *   put time, so GC lists only the references older than its cut-off.
 * - `["upload", id]`: an upload's header (hash, owner, expiry, part count,
 *   hash state, info).
 * - `["uploadPart", id, page]`: up to {@linkcode PARTS_PER_PAGE} part
 *   records, so no value nears KV's 64 KiB limit whatever the part count.
 * - `["uploadExpires", expiresMs, id]`: an index by expiry, so expiry lists
 *   only the uploads that expired.
 *
 * Needs `--unstable-kv` (or `"unstable": ["kv"]` in deno.json).
 *
 * @module
 */

import type {
  BlobRef,
  Catalog,
  HashState,
  MultipartRegistry,
  PartRecord,
  UploadRecord,
} from "../catalog.ts";
import { BadParamsError, ConflictError } from "../errors.ts";
import { commit, retryBusy } from "./busy.ts";
import {
  atomicBatches,
  GET_MANY_LIMIT,
  getManyInGroups,
  keySize,
  LIST_BATCH_LIMIT,
  MAX_KEY_SIZE,
  MAX_OPERATION_BYTES,
  MAX_VALUE_SIZE,
} from "./limits.ts";
import { KvMultipartRegistry } from "./registry.ts";

/**
 * How many part records share one KV value. A part record is at most about
 * 160 bytes serialized, so a page stays near 10 KiB, far below the 64 KiB
 * value limit; 400 parts (the default `maxParts`) fit in 7 pages, which one
 * `getMany` (10 keys at most) reads with the header as one snapshot.
 */
export const PARTS_PER_PAGE = 64;

/**
 * The most pages an upload may have. Removing an upload deletes its
 * header, expiry key and every page in one atomic operation checked on the
 * header, and KV counts every key of an operation, deleted or checked,
 * towards its 800 KiB: with keys of up to 2 KiB (KV's limit), 256 pages
 * and those three keys need at most 518 KiB, whatever the prefix and id.
 * A `list` batch (500 entries at most) reads them all as one snapshot.
 */
const MAX_PAGES = 256;

/**
 * The most parts an upload may have here: 16,384, above S3's 10,000 (the
 * most the service's `maxParts` may be set to); see `MAX_PAGES` in the
 * source for why no more.
 */
export const MAX_KV_PARTS = MAX_PAGES * PARTS_PER_PAGE;

/**
 * How many pages one atomic operation of `insertUpload` writes: 10. A page
 * is at most 64 KiB (KV refuses a bigger value) and its key 2 KiB, so with
 * room for two more such entries (the header; the expiry key and the
 * check) they stay under KV's 800 KiB per operation whatever the records
 * hold, and their keys under its 80 KiB of keys set.
 */
const PAGES_PER_OPERATION =
  Math.floor(MAX_OPERATION_BYTES / (MAX_VALUE_SIZE + MAX_KEY_SIZE)) - 2;

/**
 * How long a step keeps retrying after lost races before giving up, in ms.
 * Every lost race is someone else's commit, so the system as a whole always
 * progresses; the limit only bounds how long one caller may be unlucky.
 */
const SETTLE_TIMEOUT_MS = 30_000;

interface StoredRef {
  name: string;
  size: number;
  putTime: number;
}

interface StoredUpload {
  hash?: string;
  expires: number;
  owner?: string;
  /** The length of the upload's `parts` list. */
  partCount: number;
  /** See {@linkcode UploadRecord.hashState}; `state` is a copy of its own. */
  hashState?: HashState;
  /** See {@linkcode UploadRecord.info}. */
  info?: string;
  /**
   * Set while `insertUpload` writes the pages of a record too big for one
   * atomic operation, in several: such a header is no upload yet (every
   * step takes it for absent), and if the insert never ends (the process
   * died) expiry removes it, pages included, as it would the upload.
   */
  inserting?: true;
}

type StoredPage = (PartRecord | null)[];

/** Returned by a step whose commit failed on a check: read and try again. */
const RETRY = Symbol("retry");

/**
 * A {@linkcode Catalog} in Deno KV. Several instances (in one process or
 * many) may share one KV: each conditional step reads the records it
 * depends on, decides, and commits with `check`s on their versionstamps;
 * when another writer changed one of them in between, the step reads again
 * and decides again, so it only ever acts on a condition that holds at
 * commit time.
 *
 * `refsPutBefore` and `removeExpiredUploads` walk secondary keys ordered by
 * time, so their cost grows with what they return, not with the catalog.
 *
 * @example
 * ```ts
 * import { KvCatalog } from "@blobstore/blobstore/kv";
 *
 * const kv = await Deno.openKv(":memory:");
 * const catalog = new KvCatalog(kv);
 * const ref = { hash: "0".repeat(96), name: "n", putTime: new Date(0), size: 1 };
 * console.assert(await catalog.insertRef(ref));
 * console.assert(!(await catalog.insertRef(ref)));
 * kv.close();
 * ```
 */
export class KvCatalog implements Catalog {
  #kv: Deno.Kv;
  #prefix: string;

  /**
   * See {@linkcode Catalog.multipart}: in the same KV, under
   * `[prefix, "multipart", hash]`.
   */
  readonly multipart: MultipartRegistry;

  /**
   * Uses `kv` under keys starting with `prefix`, so one KV can hold several
   * catalogs (and a `KvBackend`'s bytes) side by side.
   */
  constructor(kv: Deno.Kv, prefix = "blobstore") {
    this.#kv = kv;
    this.#prefix = prefix;
    this.multipart = new KvMultipartRegistry(kv, [prefix, "multipart"]);
  }

  // --- references -------------------------------------------------------

  /** See {@linkcode Catalog.getRef}. */
  async getRef(hash: string): Promise<BlobRef | undefined> {
    const entry = await this.#get<StoredRef>(this.#refKey(hash));
    return entry.value ? toRef(hash, entry.value) : undefined;
  }

  /** See {@linkcode Catalog.insertRef}. */
  async insertRef(ref: BlobRef): Promise<boolean> {
    const stored = fromRef(ref);
    const key = this.#refKey(ref.hash);
    // The only check is the condition itself (no reference yet), so a
    // failed commit means another one is there: no retry.
    const result = await commit(
      this.#kv.atomic()
        .check({ key, versionstamp: null })
        .set(key, stored)
        .set(this.#refTimeKey(stored.putTime, ref.hash), stored),
    );
    return result.ok;
  }

  /** See {@linkcode Catalog.touchRef}. */
  touchRef(hash: string, putTime: Date): Promise<BlobRef | undefined> {
    const time = toMillis(putTime, "putTime");
    const key = this.#refKey(hash);
    return settle(`touch reference ${hash}`, async () => {
      const entry = await this.#get<StoredRef>(key);
      if (!entry.value) return undefined;
      const stored = { ...entry.value, putTime: time };
      const result = await commit(
        this.#kv.atomic()
          .check(entry)
          .set(key, stored)
          .delete(this.#refTimeKey(entry.value.putTime, hash))
          .set(this.#refTimeKey(time, hash), stored),
      );
      return result.ok ? toRef(hash, stored) : RETRY;
    });
  }

  /** See {@linkcode Catalog.removeRef}. */
  removeRef(hash: string, putTime: Date): Promise<boolean> {
    const time = toMillis(putTime, "putTime");
    const key = this.#refKey(hash);
    return settle(`remove reference ${hash}`, async () => {
      const entry = await this.#get<StoredRef>(key);
      // A put that refreshed the reference since GC read it wins.
      if (!entry.value || entry.value.putTime !== time) return false;
      const result = await commit(
        this.#kv.atomic()
          .check(entry)
          .delete(key)
          .delete(this.#refTimeKey(time, hash)),
      );
      return result.ok ? true : RETRY;
    });
  }

  /**
   * See {@linkcode Catalog.removeRefs}. The references are read 10 per
   * `getMany` (ten of those in flight at once), then those whose put time
   * is unchanged are removed up to 100 per atomic operation, each with a
   * check on the versionstamp read, as {@linkcode KvCatalog.removeRef}
   * does for one. A batch whose commit fails (a put refreshed one of its
   * references between the read and the commit) is done again one
   * reference at a time, so a busy reference never holds back the others.
   */
  async removeRefs(refs: readonly BlobRef[]): Promise<Set<string>> {
    const gone = new Set<string>();
    for (const batch of this.#refBatches(refs)) {
      const times = batch.map((ref) => toMillis(ref.putTime, "putTime"));
      const entries = await this.#readRefs(batch.map((ref) => ref.hash));
      if ((await this.#removeReadRefs(batch, times, entries, gone)) !== RETRY) {
        continue;
      }
      for (const [i, ref] of batch.entries()) {
        await settle(`remove reference ${ref.hash}`, async () => {
          const [entry] = await this.#readRefs([ref.hash]);
          return this.#removeReadRefs([ref], [times[i]], [entry], gone);
        });
      }
    }
    return gone;
  }

  /** See {@linkcode Catalog.refsPutBefore}. */
  async *refsPutBefore(before: Date): AsyncIterable<BlobRef> {
    // Keys are [..., putTimeMs, hash]: every key put at or before `before`
    // sorts below [..., beforeMs + 1] (times are whole milliseconds).
    const entries = this.#kv.list<StoredRef>({
      start: [this.#prefix, "refPutTime"],
      end: [this.#prefix, "refPutTime", toMillis(before, "before") + 1],
    });
    for await (const entry of entries) {
      yield toRef(entry.key[entry.key.length - 1] as string, entry.value);
    }
  }

  // --- uploads -----------------------------------------------------------

  /**
   * See {@linkcode Catalog.insertUpload}. A record of up to 640 parts (10
   * pages) is written in one atomic operation. A bigger one would not fit
   * in KV's 800 KiB per operation, so its header is written first, marked
   * as being inserted (no step sees it as an upload yet), with the first
   * pages, then the other pages 10 at a time, each operation checked on
   * that header, and the last one unmarks it: the upload appears whole or
   * not at all.
   */
  async insertUpload(upload: UploadRecord): Promise<void> {
    checkPartCount(upload.parts.length);
    const header: StoredUpload = {
      expires: toMillis(upload.expires, "expires"),
      partCount: upload.parts.length,
    };
    if (upload.hash !== undefined) header.hash = upload.hash;
    if (upload.owner !== undefined) header.owner = upload.owner;
    if (upload.info !== undefined) header.info = upload.info;
    if (upload.hashState !== undefined) {
      header.hashState = storedHashState(upload.hashState);
    }
    const key = this.#uploadKey(upload.id);
    const pages = [...toPages(upload.parts)];
    const big = pages.length > PAGES_PER_OPERATION;
    const first = this.#kv.atomic()
      .check({ key, versionstamp: null })
      .set(key, big ? { ...header, inserting: true } : header)
      .set(this.#expiresKey(header.expires, upload.id), null);
    for (const [page, records] of pages.slice(0, PAGES_PER_OPERATION)) {
      first.set(this.#pageKey(upload.id, page), records);
    }
    const result = await commit(first);
    if (!result.ok) {
      throw new ConflictError(
        `upload "${upload.id}" already exists (expected a fresh id)`,
      );
    }
    // The header stays as written until the last operation rewrites it,
    // so each checks the versionstamp of the first.
    const written = { key, versionstamp: result.versionstamp };
    for (
      let i = PAGES_PER_OPERATION;
      i < pages.length;
      i += PAGES_PER_OPERATION
    ) {
      const op = this.#kv.atomic().check(written);
      for (const [page, records] of pages.slice(i, i + PAGES_PER_OPERATION)) {
        op.set(this.#pageKey(upload.id, page), records);
      }
      if (i + PAGES_PER_OPERATION >= pages.length) op.set(key, header);
      if (!(await commit(op)).ok) {
        // Only expiry removes a header being inserted.
        throw new ConflictError(
          `upload "${upload.id}" was removed while its ${pages.length} pages were written (expected it to stay until inserted; its expiry, ${
            new Date(header.expires).toISOString()
          }, had passed when removeExpiredUploads ran)`,
        );
      }
    }
  }

  /** See {@linkcode Catalog.getUpload}. */
  async getUpload(id: string): Promise<UploadRecord | undefined> {
    return (await this.#readUpload(id))?.record;
  }

  /** See {@linkcode Catalog.uploads}. */
  async *uploads(): AsyncIterable<UploadRecord> {
    const headers = this.#kv.list<StoredUpload>({
      prefix: [this.#prefix, "upload"],
    });
    for await (const { key } of headers) {
      const upload = await this.#readUpload(key[key.length - 1] as string);
      if (upload) yield upload.record;
    }
  }

  /** See {@linkcode Catalog.initPart}. */
  initPart(id: string, part: number, record: PartRecord): Promise<boolean> {
    checkPartNumber(part);
    const { page, slot } = pageOf(part);
    const headerKey = this.#uploadKey(id);
    const pageKey = this.#pageKey(id, page);
    return settle(`init part ${part} of upload ${id}`, async () => {
      const [header, records] = await this.#getMany<
        [StoredUpload, StoredPage]
      >([headerKey, pageKey]);
      if (!isLive(header.value) || header.value.hash !== undefined) {
        return false;
      }
      const parts = records.value ?? [];
      if (parts[slot]?.complete) return false;
      while (parts.length <= slot) parts.push(null);
      parts[slot] = { ...record };
      // Checking the header as well as the page is what keeps a part from
      // being added to an upload that was finished (or removed) meanwhile.
      const op = this.#kv.atomic().check(header).check(records)
        .set(pageKey, parts);
      if (part >= header.value.partCount) {
        op.set(headerKey, { ...header.value, partCount: part + 1 });
      }
      return (await commit(op)).ok ? true : RETRY;
    });
  }

  /** See {@linkcode Catalog.completePart}. */
  completePart(id: string, part: number, hash: string): Promise<boolean> {
    checkPartNumber(part);
    const { page, slot } = pageOf(part);
    const pageKey = this.#pageKey(id, page);
    const headerKey = this.#uploadKey(id);
    return settle(`complete part ${part} of upload ${id}`, async () => {
      // Pages are deleted with their header, so a page read with a live
      // header belongs to a live upload, and the check on the page makes
      // that still true at commit. The header is read (in the same round
      // trip) but not checked: a header change (a part added, the hash
      // state advanced) must not make every part's completion start over.
      const [header, records] = await this.#getMany<
        [StoredUpload, StoredPage]
      >([headerKey, pageKey]);
      if (!isLive(header.value)) return false;
      const record = records.value?.[slot];
      if (!record || record.hash !== hash) return false;
      if (record.complete) return true;
      const parts = records.value!.slice();
      parts[slot] = { ...record, complete: true };
      const result = await commit(
        this.#kv.atomic().check(records)
          .set(pageKey, parts),
      );
      return result.ok ? true : RETRY;
    });
  }

  /** See {@linkcode Catalog.setUploadHash}. */
  setUploadHash(id: string, hash: string): Promise<boolean> {
    const key = this.#uploadKey(id);
    return settle(`set hash of upload ${id}`, async () => {
      const header = await this.#get<StoredUpload>(key);
      if (!isLive(header.value) || header.value.hash !== undefined) {
        return false;
      }
      const result = await commit(
        this.#kv.atomic().check(header)
          .set(key, { ...header.value, hash }),
      );
      return result.ok ? true : RETRY;
    });
  }

  /**
   * See {@linkcode Catalog.advanceHashState}: the state lives in the
   * header, so the step is one atomic operation checked on the header
   * read. A malformed `next` (not a whole number of parts and a
   * `Uint8Array`) is a `BadParamsError`.
   */
  async advanceHashState(
    id: string,
    from: number,
    next: HashState,
  ): Promise<boolean> {
    const state = storedHashState(next); // async: a bad one rejects
    if (!(state.parts > from)) return false;
    const key = this.#uploadKey(id);
    return await settle(`advance the hash state of upload ${id}`, async () => {
      const header = await this.#get<StoredUpload>(key);
      const upload = header.value;
      if (
        !isLive(upload) || upload.hash !== undefined ||
        (upload.hashState?.parts ?? 0) !== from
      ) {
        return false;
      }
      const result = await commit(
        this.#kv.atomic().check(header)
          .set(key, { ...upload, hashState: state }),
      );
      return result.ok ? true : RETRY;
    });
  }

  /** See {@linkcode Catalog.setOwner}. */
  setOwner(id: string, owner: string, expires: Date): Promise<boolean> {
    const time = toMillis(expires, "expires");
    const key = this.#uploadKey(id);
    return settle(`set owner of upload ${id}`, async () => {
      const header = await this.#get<StoredUpload>(key);
      const upload = header.value;
      if (
        !isLive(upload) || upload.hash === undefined ||
        (upload.owner !== undefined && upload.owner !== owner)
      ) {
        return false;
      }
      const result = await commit(
        this.#kv.atomic().check(header)
          .set(key, { ...upload, owner, expires: time })
          .delete(this.#expiresKey(upload.expires, id))
          .set(this.#expiresKey(time, id), null),
      );
      return result.ok ? true : RETRY;
    });
  }

  /** See {@linkcode Catalog.removeUpload}. */
  removeUpload(id: string, owner: string | undefined): Promise<boolean> {
    const key = this.#uploadKey(id);
    return settle(`remove upload ${id}`, async () => {
      const header = await this.#get<StoredUpload>(key);
      if (
        !header.value || !isLive(header.value) ||
        header.value.owner !== owner
      ) {
        return false;
      }
      return (await this.#deleteUpload(id, header)) ? true : RETRY;
    });
  }

  /** See {@linkcode Catalog.removeExpiredUploads}. */
  async removeExpiredUploads(now: Date): Promise<number> {
    const cutoff = toMillis(now, "now");
    // Keys are [..., expiresMs, id]: the expired ones sort below
    // [..., nowMs], since the end bound is exclusive.
    const expired = this.#kv.list<null>({
      start: [this.#prefix, "uploadExpires"],
      end: [this.#prefix, "uploadExpires", cutoff],
    });
    let removed = 0;
    for await (const { key } of expired) {
      const id = key[key.length - 1] as string;
      const gone = await settle(`expire upload ${id}`, async () => {
        const header = await this.#get<StoredUpload>(this.#uploadKey(id));
        // Its owner may have extended it since the index was read. A
        // header still marked as being inserted goes too: its insert died
        // (or inserts an expired record, and fails).
        if (!header.value || header.value.expires >= cutoff) return false;
        return (await this.#deleteUpload(id, header)) ? true : RETRY;
      });
      if (gone) removed++;
    }
    return removed;
  }

  // --- helpers -----------------------------------------------------------

  /**
   * Deletes an upload's header, pages and expiry key in one operation,
   * only if the header is still the one read. Every page lies below the
   * header's part count, and adding a page beyond it changes the header,
   * so the check also guarantees no page is left behind. At most
   * `MAX_PAGES` pages: 259 keys, within KV's limits on one operation.
   */
  async #deleteUpload(
    id: string,
    header: Deno.KvEntry<StoredUpload>,
  ): Promise<boolean> {
    const op = this.#kv.atomic().check(header)
      .delete(this.#uploadKey(id))
      .delete(this.#expiresKey(header.value.expires, id));
    for (let page = 0; page < pageCount(header.value.partCount); page++) {
      op.delete(this.#pageKey(id, page));
    }
    return (await commit(op)).ok;
  }

  /**
   * Reads an upload. Up to 9 pages (576 parts), the header and the pages
   * come from one `getMany`, which KV reads as one snapshot.
   *
   * A bigger upload's pages (at most `MAX_PAGES`) are read after the
   * header, all in one `list` batch, which is one snapshot of its own;
   * then the header once more, only to tell whether the upload was removed
   * meanwhile (read again: gone). When that header is unchanged, the
   * record is an exact snapshot. When it changed (a part added beyond the
   * end, the hash state advanced, the upload finished or owned), the
   * record is the header as first read with the pages as they were a
   * little later. That is still a record the store can act on: between
   * the two reads parts are only added, replaced while incomplete, or
   * completed, and a completed part is final, so what the header says of
   * the parts (its hash state covers complete parts; a finished upload's
   * parts are all complete) holds of pages read after it; parts added
   * beyond its count are left out. Starting over instead would starve a
   * reader of a big upload whose parts keep arriving.
   */
  #readUpload(id: string): Promise<{ record: UploadRecord } | undefined> {
    const headerKey = this.#uploadKey(id);
    const pageKeys = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => this.#pageKey(id, from + i));
    return settle(`read upload ${id}`, async () => {
      const first = await this.#getMany<unknown[]>([
        headerKey,
        ...pageKeys(0, GET_MANY_LIMIT - 1),
      ]);
      const header = first[0] as Deno.KvEntryMaybe<StoredUpload>;
      if (!isLive(header.value)) return undefined;
      const count = pageCount(header.value.partCount);
      if (count < GET_MANY_LIMIT) {
        const pages = first.slice(1).map((e) => e.value as StoredPage | null);
        return { record: toUpload(id, header.value, pages) };
      }
      const pages = await this.#listPages(id, count);
      const again = await this.#get<StoredUpload>(headerKey);
      if (!isLive(again.value)) return RETRY;
      return { record: toUpload(id, header.value, pages) };
    });
  }

  /**
   * Pages `0` to `count - 1` of upload `id` (`null` where none is
   * stored), from one `list` batch while `count` is at most
   * {@linkcode LIST_BATCH_LIMIT}, which `MAX_PAGES` guarantees for every
   * upload this catalog wrote.
   */
  #listPages(id: string, count: number): Promise<(StoredPage | null)[]> {
    return retryBusy(async () => {
      const pages: (StoredPage | null)[] = new Array(count).fill(null);
      const entries = this.#kv.list<StoredPage>(
        { start: this.#pageKey(id, 0), end: this.#pageKey(id, count) },
        { limit: count, batchSize: Math.min(count, LIST_BATCH_LIMIT) },
      );
      for await (const { key, value } of entries) {
        pages[key[key.length - 1] as number] = value;
      }
      return pages;
    });
  }

  /**
   * Cuts `refs` into batches one atomic operation can remove: at most
   * `MAX_CHECKS` references (one check each) and at most
   * `MAX_KEY_BYTES` of keys (each reference's key is checked and
   * deleted, and its put-time key deleted).
   */
  *#refBatches(refs: readonly BlobRef[]): Generator<BlobRef[]> {
    yield* atomicBatches(
      refs,
      (ref) =>
        2 * keySize(this.#refKey(ref.hash)) +
        keySize(this.#refTimeKey(0, ref.hash)),
    );
  }

  /** Reads the references of `hashes`, in order, several `getMany` at once. */
  #readRefs(
    hashes: readonly string[],
  ): Promise<Deno.KvEntryMaybe<StoredRef>[]> {
    return getManyInGroups<StoredRef>(
      hashes.map((hash) => this.#refKey(hash)),
      (group) => this.#getMany<StoredRef[]>(group),
    );
  }

  /**
   * Decides each reference of `refs` from its entry as read, and removes
   * those whose put time is still `times[i]` in one atomic operation
   * checked against the versionstamps read. Adds to `gone` the hashes of
   * the references removed, absent, or stored under another name (removed
   * by someone else and put anew: the bytes named `ref.name` are no longer
   * referenced). Returns {@linkcode RETRY}, adding none of the removals,
   * when the commit failed: one of them changed since it was read.
   */
  async #removeReadRefs(
    refs: readonly BlobRef[],
    times: readonly number[],
    entries: readonly Deno.KvEntryMaybe<StoredRef>[],
    gone: Set<string>,
  ): Promise<void | typeof RETRY> {
    const op = this.#kv.atomic();
    const removing: string[] = [];
    for (const [i, { hash, name }] of refs.entries()) {
      const entry = entries[i];
      if (!entry.value || entry.value.name !== name) {
        gone.add(hash);
      } else if (entry.value.putTime === times[i]) {
        op.check(entry)
          .delete(this.#refKey(hash))
          .delete(this.#refTimeKey(times[i], hash));
        removing.push(hash);
      }
      // Else a put refreshed it since GC read it: it stays.
    }
    if (removing.length === 0) return;
    if (!(await commit(op)).ok) return RETRY;
    for (const hash of removing) gone.add(hash);
  }

  #get<T>(key: Deno.KvKey): Promise<Deno.KvEntryMaybe<T>> {
    return retryBusy(() => this.#kv.get<T>(key));
  }

  #getMany<T extends readonly unknown[]>(
    keys: readonly [...{ [K in keyof T]: Deno.KvKey }],
  ): Promise<{ [K in keyof T]: Deno.KvEntryMaybe<T[K]> }> {
    return retryBusy(() => this.#kv.getMany<T>(keys));
  }

  #refKey(hash: string): Deno.KvKey {
    return [this.#prefix, "ref", hash];
  }

  #refTimeKey(putTime: number, hash: string): Deno.KvKey {
    return [this.#prefix, "refPutTime", putTime, hash];
  }

  #uploadKey(id: string): Deno.KvKey {
    return [this.#prefix, "upload", id];
  }

  #pageKey(id: string, page: number): Deno.KvKey {
    return [this.#prefix, "uploadPart", id, page];
  }

  #expiresKey(expires: number, id: string): Deno.KvKey {
    return [this.#prefix, "uploadExpires", expires, id];
  }
}

/**
 * Runs `attempt` until it returns something other than {@linkcode RETRY},
 * backing off a little (with jitter, so two processes do not collide in
 * step) after each lost race. Each attempt re-reads and re-decides, so a
 * retry happens only while the step's own condition still holds.
 */
async function settle<T>(
  what: string,
  attempt: () => Promise<T | typeof RETRY>,
): Promise<T> {
  const deadline = Date.now() + SETTLE_TIMEOUT_MS;
  for (let lost = 1;; lost++) {
    const result = await attempt();
    if (result !== RETRY) return result;
    if (Date.now() > deadline) {
      throw new ConflictError(
        `could not ${what} (expected a commit within ${SETTLE_TIMEOUT_MS} ms, got a concurrent change ${lost} times)`,
      );
    }
    if (lost > 2) {
      const ms = Math.random() * Math.min(lost, 50);
      await new Promise((r) => setTimeout(r, ms));
    }
  }
}

/** Whether `header` is an upload's: present, and not being inserted. */
function isLive(header: StoredUpload | null): header is StoredUpload {
  return header !== null && header.inserting !== true;
}

/**
 * A copy of `state` to store (the caller may reuse its buffer; a view's
 * whole buffer would be serialized), or a `BadParamsError`.
 */
function storedHashState(state: HashState): HashState {
  if (
    !Number.isSafeInteger(state?.parts) || state.parts < 0 ||
    !(state.state instanceof Uint8Array)
  ) {
    throw new BadParamsError(
      `invalid hash state (expected { parts: a non-negative integer, state: a Uint8Array }, got parts ${state?.parts} and a state of type ${
        state?.state?.constructor?.name ?? typeof state?.state
      })`,
    );
  }
  return { parts: state.parts, state: new Uint8Array(state.state) };
}

function toMillis(date: Date, what: string): number {
  const time = date instanceof Date ? date.getTime() : NaN;
  if (!Number.isFinite(time)) {
    throw new BadParamsError(
      `invalid ${what} (expected a valid Date, got ${date})`,
    );
  }
  return time;
}

function checkPartNumber(part: number): void {
  if (!Number.isSafeInteger(part) || part < 0 || part >= MAX_KV_PARTS) {
    throw new BadParamsError(
      `invalid part number (expected an integer in [0, ${MAX_KV_PARTS}), got ${part})`,
    );
  }
}

function checkPartCount(count: number): void {
  if (count > MAX_KV_PARTS) {
    throw new BadParamsError(
      `too many parts (expected at most ${MAX_KV_PARTS}, got ${count})`,
    );
  }
}

function pageOf(part: number): { page: number; slot: number } {
  return {
    page: Math.floor(part / PARTS_PER_PAGE),
    slot: part % PARTS_PER_PAGE,
  };
}

function pageCount(partCount: number): number {
  return Math.ceil(partCount / PARTS_PER_PAGE);
}

/** The pages of `parts` that hold at least one record. */
function* toPages(
  parts: (PartRecord | null)[],
): Generator<[number, StoredPage]> {
  for (let page = 0; page < pageCount(parts.length); page++) {
    const slice = parts.slice(
      page * PARTS_PER_PAGE,
      (page + 1) * PARTS_PER_PAGE,
    )
      .map((p) => p && { ...p });
    if (slice.some((p) => p)) yield [page, slice];
  }
}

function toRef(hash: string, stored: StoredRef): BlobRef {
  return {
    hash,
    name: stored.name,
    putTime: new Date(stored.putTime),
    size: stored.size,
  };
}

function fromRef(ref: BlobRef): StoredRef {
  return {
    name: ref.name,
    size: ref.size,
    putTime: toMillis(ref.putTime, "putTime"),
  };
}

function toUpload(
  id: string,
  header: StoredUpload,
  pages: (StoredPage | null)[],
): UploadRecord {
  const parts: (PartRecord | null)[] = [];
  for (let part = 0; part < header.partCount; part++) {
    const { page, slot } = pageOf(part);
    parts.push(pages[page]?.[slot] ?? null);
  }
  const upload: UploadRecord = {
    id,
    expires: new Date(header.expires),
    parts,
  };
  if (header.hash !== undefined) upload.hash = header.hash;
  if (header.owner !== undefined) upload.owner = header.owner;
  if (header.info !== undefined) upload.info = header.info;
  if (header.hashState !== undefined) {
    // Each read deserializes a fresh Uint8Array: already a copy.
    upload.hashState = {
      parts: header.hashState.parts,
      state: header.hashState.state,
    };
  }
  return upload;
}
