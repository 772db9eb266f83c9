/**
 * The multipart registry in MongoDB, used by the server beside the MongoDB
 * catalog so that every instance sharing the database sees the same
 * multipart blobs. Loaded only when `MONGODB_URL` is set.
 *
 * @module
 */

import type { Collection, Db } from "mongodb";
import {
  isDuplicateKey,
  mongoStep,
  mongoSteps,
  toMongoStoreError,
} from "./error.ts";
import type { MultipartEntry, MultipartRegistry } from "../catalog.ts";

interface EntryDocument {
  _id: string;
  uploadId: string;
  finished: Date;
}

/**
 * A {@linkcode MultipartRegistry} in the collection `<prefix>.multipart`,
 * one document per hash. Each compare-and-set is one conditional document
 * write (insert, replace or delete filtered on the upload id).
 *
 * @example
 * ```ts ignore
 * import { MongoClient } from "mongodb";
 * import { MongoMultipartRegistry } from "@blobstore/blobstore/mongo";
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
    const doc = await this.#step(
      "get",
      () => this.#entries.findOne({ _id: hash }),
    );
    return doc ? { uploadId: doc.uploadId, finished: doc.finished } : undefined;
  }

  /** Runs one driver call; a failure of its own is a `MongoStoreError`. */
  #step<T>(method: string, op: () => Promise<T>): Promise<T> {
    return mongoStep(
      `MongoMultipartRegistry.${method}`,
      this.#entries.collectionName,
      op,
    );
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
        if (isDuplicateKey(err)) return false;
        throw toMongoStoreError(
          "MongoMultipartRegistry.compareAndSet",
          this.#entries.collectionName,
          err,
        );
      }
    }
    const filter = { _id: hash, uploadId: expected };
    if (!entry) {
      const deleted = await this.#step(
        "compareAndSet",
        () => this.#entries.deleteOne(filter),
      );
      return deleted.deletedCount === 1;
    }
    const replaced = await this.#step(
      "compareAndSet",
      () =>
        this.#entries.replaceOne(filter, {
          uploadId: entry.uploadId,
          finished: entry.finished,
        }),
    );
    return replaced.matchedCount === 1;
  }

  /** See {@linkcode MultipartRegistry.entries}. */
  async *entries(): AsyncIterable<MultipartEntry & { hash: string }> {
    const docs = mongoSteps(
      "MongoMultipartRegistry.entries",
      this.#entries.collectionName,
      this.#entries.find(),
    );
    for await (const doc of docs) {
      yield { hash: doc._id, uploadId: doc.uploadId, finished: doc.finished };
    }
  }
}
