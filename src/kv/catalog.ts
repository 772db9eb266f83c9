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
 * - `["upload", id]`: an upload's header (hash, owner, expiry, part count).
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
 * The most parts an upload may have here: removing an upload deletes its
 * header, expiry key and every page in one atomic operation, and KV allows
 * 1000 mutations per operation.
 */
export const MAX_KV_PARTS = 900 * PARTS_PER_PAGE;

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

  /** See {@linkcode Catalog.insertUpload}. */
  async insertUpload(upload: UploadRecord): Promise<void> {
    checkPartCount(upload.parts.length);
    const header: StoredUpload = {
      expires: toMillis(upload.expires, "expires"),
      partCount: upload.parts.length,
    };
    if (upload.hash !== undefined) header.hash = upload.hash;
    if (upload.owner !== undefined) header.owner = upload.owner;
    const key = this.#uploadKey(upload.id);
    const op = this.#kv.atomic()
      .check({ key, versionstamp: null })
      .set(key, header)
      .set(this.#expiresKey(header.expires, upload.id), null);
    for (const [page, records] of toPages(upload.parts)) {
      op.set(this.#pageKey(upload.id, page), records);
    }
    if (!(await commit(op)).ok) {
      throw new ConflictError(
        `upload "${upload.id}" already exists (expected a fresh id)`,
      );
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
      if (!header.value || header.value.hash !== undefined) return false;
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
    return settle(`complete part ${part} of upload ${id}`, async () => {
      // Pages are deleted with their header, so a page read here belongs
      // to a live upload; the check makes that still true at commit.
      const records = await this.#get<StoredPage>(pageKey);
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
      if (!header.value || header.value.hash !== undefined) return false;
      const result = await commit(
        this.#kv.atomic().check(header)
          .set(key, { ...header.value, hash }),
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
        !upload || upload.hash === undefined ||
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
      if (!header.value || header.value.owner !== owner) return false;
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
        // Its owner may have extended it since the index was read.
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
   * so the check also guarantees no page is left behind.
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
   * Reads an upload as one snapshot: the header and its first 9 pages (576
   * parts) come from one `getMany`, which KV reads consistently. A bigger
   * upload reads the rest after, then reads the header again and starts
   * over if it changed (finished, owned, grown or removed meanwhile); parts
   * only ever get added or completed between those reads, so the record
   * returned is never older than its header.
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
      if (!header.value) return undefined;
      const pages = first.slice(1).map((e) => e.value as StoredPage | null);
      const count = pageCount(header.value.partCount);
      if (count <= pages.length) {
        return { record: toUpload(id, header.value, pages) };
      }
      for (let page = pages.length; page < count; page += GET_MANY_LIMIT) {
        const rest = await this.#getMany<StoredPage[]>(
          pageKeys(page, Math.min(page + GET_MANY_LIMIT, count)),
        );
        pages.push(...rest.map((e) => e.value));
      }
      const again = await this.#get(headerKey);
      if (again.versionstamp !== header.versionstamp) return RETRY;
      return { record: toUpload(id, header.value, pages) };
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
  return upload;
}
