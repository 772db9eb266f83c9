/**
 * The MongoDB side of the server's seams: the catalog, the GridFS backend
 * and the multipart registry in one database. `config.ts` imports this
 * module only when `MONGODB_URL` is set, so the driver stays out of every
 * other run.
 *
 * @module
 */

import { MongoClient } from "mongodb";
import { MongoBackend } from "../mongo/backend.ts";
import { MongoCatalog } from "../mongo/catalog.ts";
import { type CatalogSide, redact } from "./seams.ts";

/** The prefix of every collection the server uses. */
const MONGO_PREFIX = "blobstore";

/**
 * Connects to `url` and opens the seams in the URL's database (default
 * `blobstore`), pushing the client's close onto `closers`.
 */
export async function openMongo(
  url: string,
  closers: (() => Promise<void> | void)[],
): Promise<CatalogSide> {
  const client = new MongoClient(url);
  closers.push(() => client.close());
  await client.connect();
  const dbName = databaseName(url) ?? "blobstore";
  const db = client.db(dbName);
  const where = `MongoDB database ${dbName} at ${redact(url)}`;
  return {
    catalog: new MongoCatalog(db, MONGO_PREFIX),
    backend: new MongoBackend(db, MONGO_PREFIX),
    description: {
      catalog: `${where} (collections ${MONGO_PREFIX}.*)`,
      backend: `GridFS in ${where}`,
    },
  };
}

/** The database named in a MongoDB URL's path, if any. */
function databaseName(url: string): string | undefined {
  const match = url.match(/^mongodb(?:\+srv)?:\/\/[^/]+\/([^?]+)/);
  return match ? decodeURIComponent(match[1]) : undefined;
}
