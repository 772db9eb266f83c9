/**
 * The multipart registry in MongoDB, used by the server beside the MongoDB
 * catalog so that every instance sharing the database sees the same
 * multipart blobs. Loaded only when `MONGODB_URL` is set.
 *
 * @module
 */

import type { Collection, Db } from "mongodb";
import type { MultipartEntry, MultipartRegistry } from "./registry.ts";

interface EntryDocument {
  _id: string;
  uploadId: string;
  finished: Date;
}

const DUPLICATE_KEY = 11000;

/**
 * A {@linkcode MultipartRegistry} in the collection `<prefix>.multipart`,
 * one document per hash. Each compare-and-set is one conditional document
 * write (insert, replace or delete filtered on the upload id).
 *
 * @example
 * ```ts ignore
 * import { MongoClient } from "mongodb";
 * import { MongoMultipartRegistry } from "./registry_mongo.ts";
 *
 * const client = await new MongoClient("mongodb://127.0.0.1:27017/").connect();
 * const registry = new MongoMultipartRegistry(client.db("blobstore"), "blobstore");
 * console.log(await registry.get("a".repeat(96)));
 * await client.close();
 * ```
 */
export class MongoMultipartRegistry implements MultipartRegistry {
  #entries: Collection<EntryDocument>;

  /** Uses the collection `<prefix>.multipart` of `db`. */
  constructor(db: Db, prefix: string) {
    this.#entries = db.collection<EntryDocument>(`${prefix}.multipart`);
  }

  /** See {@linkcode MultipartRegistry.get}. */
  async get(hash: string): Promise<MultipartEntry | undefined> {
    const doc = await this.#entries.findOne({ _id: hash });
    return doc ? { uploadId: doc.uploadId, finished: doc.finished } : undefined;
  }

  /** See {@linkcode MultipartRegistry.compareAndSet}. */
  async compareAndSet(
    hash: string,
    expected: string | undefined,
    entry: MultipartEntry | undefined,
  ): Promise<boolean> {
    if (expected === undefined) {
      if (!entry) return (await this.get(hash)) === undefined;
      try {
        await this.#entries.insertOne({ _id: hash, ...entry });
        return true;
      } catch (err) {
        if ((err as { code?: number }).code === DUPLICATE_KEY) return false;
        throw err;
      }
    }
    const filter = { _id: hash, uploadId: expected };
    if (!entry) {
      return (await this.#entries.deleteOne(filter)).deletedCount === 1;
    }
    const replaced = await this.#entries.replaceOne(filter, {
      uploadId: entry.uploadId,
      finished: entry.finished,
    });
    return replaced.matchedCount === 1;
  }

  /** See {@linkcode MultipartRegistry.entries}. */
  async *entries(): AsyncIterable<MultipartEntry & { hash: string }> {
    for await (const doc of this.#entries.find()) {
      yield { hash: doc._id, uploadId: doc.uploadId, finished: doc.finished };
    }
  }
}
