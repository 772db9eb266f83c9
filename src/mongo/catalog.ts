/**
 * A catalog in MongoDB (or any server that speaks its protocol, such as
 * FerretDB), with the document shapes of the Go charmstore blobstore, so a
 * deployment's existing data keeps working.
 *
 * - `<prefix>.blobref`: `{ _id: hash, name, puttime: Date, size: int64 }`
 * - `<prefix>.upload`: `{ _id: uploadId, hash?, expires: Date,
 *   parts: [{ hash, size: int64, complete, offset: int64 } | null], owner? }`
 *
 * Beside them, two fields of our own on an upload: `hashstate?: { parts:
 * int, state: BinData }`, the running hash of its first parts
 * (`advanceHashState`), and `info?: string`, what its creator recorded
 * about it. The Go store ignores them (mgo skips fields its structs lack)
 * and its updates `$set` other fields, so it leaves them be; a Go document
 * reads as an upload with neither.
 *
 * An upload document of 10,000 parts (S3's limit, the most the service's
 * `maxParts` may be) is about 1.6 MB, a tenth of MongoDB's 16 MiB.
 *
 * Every conditional step is one atomic update or delete of a single
 * document, its condition in the filter, as in Go: no multi-document
 * transactions, so a single server (no replica set) is enough.
 *
 * FerretDB v1 does not make such a step atomic: it reads the matching
 * document, applies the update in its own process, and writes the whole
 * document back by `_id`, so two concurrent updates of one document can
 * both pass their condition, and the later write erases the earlier. The
 * catalog therefore also runs the steps on any one document one at a time
 * within the process (a queue per document, shared by every catalog on the
 * same collection). On MongoDB that changes nothing (it serializes updates
 * of a document itself); on FerretDB v1 it makes one process correct, but
 * stores in several processes sharing a FerretDB v1 can still race.
 *
 * A failure of the driver or the server that the code does not handle on
 * purpose (a duplicate key on insert means "there first", for instance) is
 * thrown as a `MongoStoreError` naming the method and the collection, the
 * driver's error as its `cause`.
 *
 * @module
 */

import {
  Binary,
  type Collection,
  type Db,
  type Filter,
  Long,
  type UpdateFilter,
} from "mongodb";
import type {
  BlobRef,
  Catalog,
  HashState,
  MultipartRegistry,
  PartRecord,
  UploadRecord,
} from "../catalog.ts";
import { BadParamsError } from "../errors.ts";
import {
  isDuplicateKey,
  mongoStep,
  mongoSteps,
  MongoStoreError,
} from "./error.ts";
import { MongoMultipartRegistry } from "./registry.ts";

/** A blob reference as stored: the Go `blobRefDoc`. */
interface BlobRefDoc {
  _id: string;
  name: string;
  puttime: Date;
  size: number | Long;
}

/** One part as stored: the Go `PartInfo`. */
interface PartDoc {
  hash: string;
  size: number | Long;
  complete: boolean;
  offset: number | Long;
}

/** A hash state as stored; not in Go. */
interface HashStateDoc {
  parts: number;
  state: Binary;
}

/** An upload record as stored: the Go `uploadDoc`, `hashstate` and `info`. */
interface UploadDoc {
  _id: string;
  hash?: string;
  expires: Date;
  parts: (PartDoc | null)[];
  owner?: string;
  hashstate?: HashStateDoc;
  info?: string;
}

/**
 * Runs operations one after another per key, within this process. Keys are
 * `namespace + _id`: one queue per document.
 */
class DocumentQueues {
  #tails = new Map<string, Promise<void>>();

  /** Runs `op` once every earlier operation on `key` has settled. */
  run<T>(key: string, op: () => Promise<T>): Promise<T> {
    return this.runAll([key], op);
  }

  /**
   * Runs `op` once every earlier operation on any of `keys` has settled,
   * and holds back later ones on them until it settles. (Waits only ever
   * go to operations queued earlier, so no two can wait on each other.)
   */
  runAll<T>(keys: readonly string[], op: () => Promise<T>): Promise<T> {
    const previous = Promise.all(
      keys.map((key) => this.#tails.get(key) ?? Promise.resolve()),
    );
    const result = previous.then(op);
    const tail = result.then(() => {}, () => {});
    for (const key of keys) this.#tails.set(key, tail);
    tail.then(() => {
      for (const key of keys) {
        if (this.#tails.get(key) === tail) this.#tails.delete(key);
      }
    });
    return result;
  }
}

/** Shared by every catalog, so two catalogs on one collection queue too. */
const queues = new DocumentQueues();

/**
 * A {@linkcode Catalog} in a MongoDB database: blob references in collection
 * `<prefix>.blobref` and upload records in `<prefix>.upload`, in the same
 * shapes as the Go charmstore blobstore.
 *
 * Indexes (`puttime` on references, for GC; `expires` on uploads, for
 * expiry) are created lazily, once per instance, by the first
 * {@linkcode MongoCatalog.refsPutBefore} or
 * {@linkcode MongoCatalog.removeExpiredUploads} that needs them; call
 * {@linkcode MongoCatalog.ensureIndexes} at start-up to create them up
 * front instead (it is idempotent).
 *
 * Unexpected driver and server failures are thrown as `MongoStoreError`
 * (the driver's error as `cause`).
 *
 * @example
 * ```ts ignore
 * import { MongoClient } from "mongodb";
 * import { MongoCatalog } from "@blobstore/blobstore/mongo";
 *
 * const client = await MongoClient.connect("mongodb://127.0.0.1:27017/");
 * const catalog = new MongoCatalog(client.db("charmstore"), "blobstore");
 * await catalog.ensureIndexes();
 * console.log(await catalog.getRef("0".repeat(96))); // undefined
 * await client.close();
 * ```
 */
export class MongoCatalog implements Catalog {
  readonly #refs: Collection<BlobRefDoc>;
  readonly #uploads: Collection<UploadDoc>;
  #indexes?: Promise<void>;

  /**
   * See {@linkcode Catalog.multipart}: the collection `<prefix>.multipart`
   * (`{ _id: hash, uploadId, finished }`), beside the Go shapes of
   * `<prefix>.blobref` and `<prefix>.upload`, which it leaves untouched.
   */
  readonly multipart: MultipartRegistry;

  /**
   * Uses collections `<prefix>.blobref`, `<prefix>.upload` and
   * `<prefix>.multipart` of `db`. Nothing is sent to the server until the
   * first call.
   */
  constructor(db: Db, prefix: string) {
    this.#refs = db.collection<BlobRefDoc>(`${prefix}.blobref`);
    this.#uploads = db.collection<UploadDoc>(`${prefix}.upload`);
    this.multipart = new MongoMultipartRegistry(db, prefix);
  }

  /** Runs driver calls on references as `MongoCatalog.<method>`. */
  #refStep<T>(method: string, op: () => Promise<T>): Promise<T> {
    return mongoStep(`MongoCatalog.${method}`, this.#refs.collectionName, op);
  }

  /** Runs driver calls on upload records as `MongoCatalog.<method>`. */
  #uploadStep<T>(method: string, op: () => Promise<T>): Promise<T> {
    return mongoStep(
      `MongoCatalog.${method}`,
      this.#uploads.collectionName,
      op,
    );
  }

  /** Runs a step on reference `hash` after the earlier ones on it. */
  #onRef<T>(hash: string, op: () => Promise<T>): Promise<T> {
    return queues.run(`${this.#refs.namespace}\0${hash}`, op);
  }

  /** Runs a step on upload `id` after the earlier ones on it. */
  #onUpload<T>(id: string, op: () => Promise<T>): Promise<T> {
    return queues.run(`${this.#uploads.namespace}\0${id}`, op);
  }

  /**
   * Creates the indexes the catalog's queries need, if missing: `puttime`
   * on references and `expires` on uploads. Safe to call any number of
   * times and from several processes.
   */
  ensureIndexes(): Promise<void> {
    this.#indexes ??= Promise.all([
      this.#refStep(
        "ensureIndexes",
        () => this.#refs.createIndex({ puttime: 1 }),
      ),
      this.#uploadStep(
        "ensureIndexes",
        () => this.#uploads.createIndex({ expires: 1 }),
      ),
    ]).then(
      () => {},
      (err) => {
        // Let a later call try again rather than remember the failure.
        this.#indexes = undefined;
        throw err;
      },
    );
    return this.#indexes;
  }

  /** See {@linkcode Catalog.getRef}. */
  async getRef(hash: string): Promise<BlobRef | undefined> {
    const doc = await this.#refStep(
      "getRef",
      () => this.#refs.findOne({ _id: hash }),
    );
    return doc ? toRef(doc) : undefined;
  }

  /** See {@linkcode Catalog.insertRef}. */
  async insertRef(ref: BlobRef): Promise<boolean> {
    try {
      await this.#refs.insertOne({
        _id: ref.hash,
        name: ref.name,
        puttime: ref.putTime,
        size: Long.fromNumber(ref.size),
      });
      return true;
    } catch (err) {
      // The unique _id is the arbiter between concurrent puts.
      if (isDuplicateKey(err)) return false;
      throw new MongoStoreError(
        "MongoCatalog.insertRef",
        this.#refs.collectionName,
        err,
      );
    }
  }

  /** See {@linkcode Catalog.touchRef}. */
  touchRef(hash: string, putTime: Date): Promise<BlobRef | undefined> {
    // One findAndModify: the update and the reference it returns are one
    // atomic step, and it costs one round trip whether or not the hash is
    // there. `updateOne` is no cheaper on a miss (FerretDB v1.24 on SQLite:
    // both scan the collection, ~24 ms at 10,000 references, because its
    // `_id` filter does not match its own `_id` index expression; only
    // inserts use that index) and needs a second, non-atomic read on a hit.
    // `$set`, not `$max`: the contract sets the put time it is given.
    return this.#onRef(hash, async () => {
      const doc = await this.#refStep(
        "touchRef",
        () =>
          this.#refs.findOneAndUpdate(
            { _id: hash },
            { $set: { puttime: putTime } },
            { returnDocument: "after" },
          ),
      );
      return doc ? toRef(doc) : undefined;
    });
  }

  /** See {@linkcode Catalog.removeRef}. */
  removeRef(hash: string, putTime: Date): Promise<boolean> {
    return this.#onRef(hash, async () => {
      // The put time in the filter makes this lose to a concurrent put that
      // refreshed the reference after GC read it.
      const { deletedCount } = await this.#refStep(
        "removeRef",
        () => this.#refs.deleteOne({ _id: hash, puttime: putTime }),
      );
      return deletedCount === 1;
    });
  }

  /**
   * See {@linkcode Catalog.removeRefs}. One `deleteMany` whose filter holds
   * each reference's condition (`_id` and put time; references that share a
   * put time share one `$in` branch), and, only when fewer were deleted
   * than asked, one `find` to tell which: a reference still there under the
   * same name was refreshed by a put and stays. On MongoDB each branch is
   * an `_id` index lookup and each document's delete is atomic with its
   * condition. FerretDB v1 evaluates the filter against every document once
   * per branch (about a second per branch at 100,000 references here), so
   * there a batch costs a collection scan per distinct put time.
   */
  removeRefs(refs: readonly BlobRef[]): Promise<Set<string>> {
    if (refs.length === 0) return Promise.resolve(new Set());
    const hashes = refs.map((ref) => ref.hash);
    const byTime = new Map<number, string[]>();
    for (const { hash, putTime } of refs) {
      const group = byTime.get(putTime.getTime());
      if (group) group.push(hash);
      else byTime.set(putTime.getTime(), [hash]);
    }
    const branches = [...byTime].map(([time, ids]) => ({
      _id: { $in: ids },
      puttime: new Date(time),
    }));
    const keys = hashes.map((hash) => `${this.#refs.namespace}\0${hash}`);
    // Every reference's queue is held, so no touchRef of this process
    // slips between FerretDB v1's read and delete of a matching document.
    return queues.runAll(keys, () =>
      this.#refStep("removeRefs", async () => {
        const { deletedCount } = await this.#refs.deleteMany(
          branches.length === 1 ? branches[0] : { $or: branches },
        );
        const gone = new Set(hashes);
        if (deletedCount === refs.length) return gone;
        const names = new Map(refs.map((ref) => [ref.hash, ref.name]));
        const left = this.#refs.find({ _id: { $in: hashes } }, {
          projection: { name: 1 },
        });
        for await (const doc of left) {
          if (doc.name === names.get(doc._id)) gone.delete(doc._id);
        }
        return gone;
      }));
  }

  /** See {@linkcode Catalog.refsPutBefore}. */
  async *refsPutBefore(before: Date): AsyncIterable<BlobRef> {
    await this.ensureIndexes();
    const cursor = this.#refs.find({ puttime: { $lte: before } });
    const docs = mongoSteps(
      "MongoCatalog.refsPutBefore",
      this.#refs.collectionName,
      cursor,
    );
    for await (const doc of docs) yield toRef(doc);
  }

  /** See {@linkcode Catalog.insertUpload}. */
  async insertUpload(upload: UploadRecord): Promise<void> {
    const doc = fromUpload(upload);
    await this.#uploadStep("insertUpload", () => this.#uploads.insertOne(doc));
  }

  /** See {@linkcode Catalog.getUpload}. */
  async getUpload(id: string): Promise<UploadRecord | undefined> {
    const doc = await this.#uploadStep(
      "getUpload",
      () => this.#uploads.findOne({ _id: id }),
    );
    return doc ? toUpload(doc) : undefined;
  }

  /** See {@linkcode Catalog.uploads}. */
  async *uploads(): AsyncIterable<UploadRecord> {
    const docs = mongoSteps(
      "MongoCatalog.uploads",
      this.#uploads.collectionName,
      this.#uploads.find({}),
    );
    for await (const doc of docs) yield toUpload(doc);
  }

  /** See {@linkcode Catalog.initPart}. */
  initPart(id: string, part: number, record: PartRecord): Promise<boolean> {
    const path = `parts.${partIndex(part)}`;
    // "Absent" is spelled `$exists: false` (beyond the end) or `$type:
    // "null"` (a gap), not `{ [path]: null }`: MongoDB reads a numeric path
    // on an array of documents both as an index and as field "N" of each
    // element, missing in every part, and missing equals null, so that
    // shorter filter risks matching an upload whose part N is set. The two
    // explicit forms mean the same on MongoDB and FerretDB. Both pad the
    // array with nulls when `$set` writes past its end. An incomplete part
    // (`complete: false`, which no element lacking the field matches) may
    // be replaced too, as Go's initializePart allows: only a completed part
    // is final.
    return this.#updateUpload(
      "initPart",
      {
        _id: id,
        hash: { $exists: false },
        $or: [
          { [path]: { $exists: false } },
          { [path]: { $type: "null" } },
          { [`${path}.complete`]: false },
        ],
      },
      { $set: { [path]: fromPart(record) } },
    );
  }

  /** See {@linkcode Catalog.completePart}. */
  completePart(id: string, part: number, hash: string): Promise<boolean> {
    const path = `parts.${partIndex(part)}`;
    return this.#updateUpload(
      "completePart",
      { _id: id, [`${path}.hash`]: hash },
      { $set: { [`${path}.complete`]: true } },
    );
  }

  /** See {@linkcode Catalog.setUploadHash}. */
  setUploadHash(id: string, hash: string): Promise<boolean> {
    return this.#updateUpload(
      "setUploadHash",
      { _id: id, hash: { $exists: false } },
      { $set: { hash } },
    );
  }

  /**
   * See {@linkcode Catalog.advanceHashState}: one conditional update, its
   * condition in the filter (no hash yet; the stored state's part count is
   * `from`, or, from 0, no state at all). A malformed `next` (not a whole
   * number of parts and a `Uint8Array`) is a `BadParamsError`.
   */
  async advanceHashState(
    id: string,
    from: number,
    next: HashState,
  ): Promise<boolean> {
    const hashstate = fromHashState(next); // async: a bad one rejects
    if (!(hashstate.parts > from)) return false;
    return await this.#updateUpload(
      "advanceHashState",
      {
        _id: id,
        hash: { $exists: false },
        ...(from === 0
          ? {
            $or: [{ hashstate: { $exists: false } }, { "hashstate.parts": 0 }],
          }
          : { "hashstate.parts": from }),
      },
      { $set: { hashstate } },
    );
  }

  /** See {@linkcode Catalog.setOwner}. */
  setOwner(id: string, owner: string, expires: Date): Promise<boolean> {
    return this.#updateUpload(
      "setOwner",
      {
        _id: id,
        hash: { $exists: true },
        $or: [{ owner: { $exists: false } }, { owner }],
      },
      { $set: { owner, expires } },
    );
  }

  /** See {@linkcode Catalog.removeUpload}. */
  removeUpload(id: string, owner: string | undefined): Promise<boolean> {
    return this.#deleteUpload("removeUpload", {
      _id: id,
      owner: owner === undefined ? { $exists: false } : owner,
    });
  }

  /** See {@linkcode Catalog.removeExpiredUploads}. */
  async removeExpiredUploads(now: Date): Promise<number> {
    await this.ensureIndexes();
    // One conditional delete per record rather than one deleteMany, so each
    // runs in its record's queue: a setOwner that moved the expiry just
    // before wins, on FerretDB v1 as on MongoDB.
    const expired = await this.#uploadStep(
      "removeExpiredUploads",
      () =>
        this.#uploads
          .find({ expires: { $lt: now } }, { projection: { _id: 1 } })
          .toArray(),
    );
    let removed = 0;
    for (const { _id } of expired) {
      const filter = { _id, expires: { $lt: now } };
      if (await this.#deleteUpload("removeExpiredUploads", filter)) removed++;
    }
    return removed;
  }

  /** One conditional update of one upload record; whether it matched. */
  #updateUpload(
    method: string,
    filter: Filter<UploadDoc> & { _id: string },
    update: UpdateFilter<UploadDoc>,
  ): Promise<boolean> {
    return this.#onUpload(filter._id, async () => {
      const { matchedCount } = await this.#uploadStep(
        method,
        () => this.#uploads.updateOne(filter, update),
      );
      return matchedCount === 1;
    });
  }

  /** One conditional delete of one upload record; whether it matched. */
  #deleteUpload(
    method: string,
    filter: Filter<UploadDoc> & { _id: string },
  ): Promise<boolean> {
    return this.#onUpload(filter._id, async () => {
      const { deletedCount } = await this.#uploadStep(
        method,
        () => this.#uploads.deleteOne(filter),
      );
      return deletedCount === 1;
    });
  }
}

function partIndex(part: number): number {
  // The store checks part numbers; this guards the path we build from it.
  if (!Number.isSafeInteger(part) || part < 0) {
    throw new RangeError(
      `invalid part number (expected a non-negative integer, got ${part})`,
    );
  }
  return part;
}

function toNumber(value: number | Long | bigint): number {
  if (typeof value === "number") return value;
  if (typeof value === "bigint") return Number(value);
  return value.toNumber();
}

function toRef(doc: BlobRefDoc): BlobRef {
  return {
    hash: doc._id,
    name: doc.name,
    putTime: doc.puttime,
    size: toNumber(doc.size),
  };
}

function fromPart(part: PartRecord): PartDoc {
  // Sizes and offsets are int64 in Go; store them so, whatever their value.
  return {
    hash: part.hash,
    size: Long.fromNumber(part.size),
    complete: part.complete,
    offset: Long.fromNumber(part.offset),
  };
}

function toPart(doc: PartDoc | null | undefined): PartRecord | null {
  if (!doc) return null;
  return {
    hash: doc.hash,
    size: toNumber(doc.size),
    offset: toNumber(doc.offset),
    complete: doc.complete === true,
  };
}

/** `state` as stored (a copy of its bytes), or a `BadParamsError`. */
function fromHashState(state: HashState): HashStateDoc {
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
  return { parts: state.parts, state: new Binary(state.state.slice()) };
}

function toHashState(doc: HashStateDoc): HashState {
  // A plain Uint8Array copy, not the driver's Buffer: records returned are
  // copies, and compare equal to what was stored.
  const bytes: Uint8Array = doc.state instanceof Binary
    ? doc.state.value()
    : doc.state;
  return { parts: toNumber(doc.parts), state: new Uint8Array(bytes) };
}

function fromUpload(upload: UploadRecord): UploadDoc {
  // Go omits an empty hash and owner (`omitempty`); so do we, and the
  // conditions above test for their absence.
  return {
    _id: upload.id,
    ...(upload.hash !== undefined && { hash: upload.hash }),
    expires: upload.expires,
    parts: upload.parts.map((part) => part && fromPart(part)),
    ...(upload.owner !== undefined && { owner: upload.owner }),
    ...(upload.hashState !== undefined &&
      { hashstate: fromHashState(upload.hashState) }),
    ...(upload.info !== undefined && { info: upload.info }),
  };
}

function toUpload(doc: UploadDoc): UploadRecord {
  const upload: UploadRecord = {
    id: doc._id,
    expires: doc.expires,
    parts: (doc.parts ?? []).map(toPart),
  };
  if (doc.hash !== undefined && doc.hash !== null) upload.hash = doc.hash;
  if (doc.owner !== undefined && doc.owner !== null) upload.owner = doc.owner;
  if (doc.hashstate !== undefined && doc.hashstate !== null) {
    upload.hashState = toHashState(doc.hashstate);
  }
  if (typeof doc.info === "string") upload.info = doc.info;
  return upload;
}
