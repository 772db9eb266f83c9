/**
 * The stores the fault suite runs against, on its private servers: the
 * MongoDB seams on a private FerretDB, and the MongoDB catalog with the
 * Swift backend behind a private Swift proxy. Each rig also says how to
 * find bytes a backend's listing cannot show.
 *
 * @module
 */

import { type Db, MongoClient, type MongoClientOptions } from "mongodb";
import { SwiftBackend } from "../../src/backends/swift.ts";
import { SwiftAuth } from "../../src/backends/swift_auth.ts";
import { MongoBackend } from "../../src/backends/gridfs.ts";
import { MongoCatalog } from "../../src/catalogs/mongo.ts";
import { Store } from "../../src/store.ts";
import type { Rig } from "./workload.ts";
import type { PrivateFerretDB, PrivateSwiftProxy } from "./servers.ts";

/**
 * The driver's time limits the suite runs with, and the README recommends:
 * without them a dead server holds each operation for 30 s (server
 * selection) and a hung one forever (no socket timeout by default).
 */
export const MONGO_TIMEOUTS: MongoClientOptions = {
  serverSelectionTimeoutMS: 3000,
  connectTimeoutMS: 3000,
  socketTimeoutMS: 10_000,
};

/** Swift's per-request limit in the suite (a frozen proxy fails puts and gets after it). */
export const SWIFT_TIMEOUT_MS = 5000;

/** The tempauth test account of scripts/swift.sh. */
export function swiftCredentials(authURL: string) {
  return { authURL, tenant: "test", username: "tester", secret: "testing" };
}

function freshName(prefix: string): string {
  return `${prefix}_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
}

/** Chunks of a GridFS bucket whose files document is gone: bytes no listing shows. */
export async function danglingChunks(
  db: Db,
  prefix: string,
): Promise<string[]> {
  const files = new Set(
    (await db.collection(`${prefix}.files`).find({}, {
      projection: { _id: 1 },
    }).toArray()).map((f) => String(f._id)),
  );
  const ids = await db.collection(`${prefix}.chunks`).distinct("files_id");
  return ids.filter((id) => !files.has(String(id))).map((id) =>
    `GridFS chunks of missing file ${id}`
  );
}

/** Names in a Swift container (empty when it does not exist). */
export async function swiftNames(
  authURL: string,
  container: string,
): Promise<string[]> {
  const auth = new SwiftAuth(swiftCredentials(authURL));
  const { token, storageURL } = await auth.session();
  const res = await fetch(
    `${storageURL}/${encodeURIComponent(container)}?format=json`,
    { headers: { "X-Auth-Token": token } },
  );
  if (res.status === 404) {
    await res.body?.cancel();
    return [];
  }
  if (!res.ok) throw new Error(`listing ${container}: HTTP ${res.status}`);
  return ((await res.json()) as { name: string }[]).map((o) => o.name);
}

/** Deletes a Swift container and everything in it. */
export async function dropContainer(
  authURL: string,
  container: string,
): Promise<void> {
  const auth = new SwiftAuth(swiftCredentials(authURL));
  const { token, storageURL } = await auth.session();
  const headers = { "X-Auth-Token": token };
  for (const name of await swiftNames(authURL, container)) {
    const path = name.split("/").map(encodeURIComponent).join("/");
    await (await fetch(
      `${storageURL}/${encodeURIComponent(container)}/${path}`,
      { method: "DELETE", headers },
    )).body?.cancel();
  }
  await (await fetch(`${storageURL}/${encodeURIComponent(container)}`, {
    method: "DELETE",
    headers,
  })).body?.cancel();
}

/** A rig with its cleanup. */
export interface OpenRig extends Rig {
  close(): Promise<void>;
}

/** MongoCatalog + MongoBackend, both on `ferret`. */
export async function mongoRig(
  ferret: PrivateFerretDB,
  minPartSize: number,
): Promise<OpenRig> {
  const client = new MongoClient(ferret.url, MONGO_TIMEOUTS);
  await client.connect();
  const db = client.db(freshName("faults"));
  const prefix = "blobstore";
  const catalog = new MongoCatalog(db, prefix);
  await catalog.ensureIndexes();
  return {
    name: "MongoCatalog + MongoBackend (FerretDB killed)",
    store: new Store({
      catalog,
      // graceMs 0: the sweep runs once the workload has stopped, so every
      // upload without a files document by then is debris of a killed put.
      backend: new MongoBackend(db, prefix, {
        chunkSizeBytes: 64 * 1024,
        graceMs: 0,
      }),
      minPartSize,
    }),
    servers: [ferret],
    leftovers: () => danglingChunks(db, prefix),
    async close() {
      await db.dropDatabase().catch(() => {});
      await client.close();
    },
  };
}

/** MongoCatalog on `ferret` + SwiftBackend through `proxy`. */
export async function swiftRig(
  ferret: PrivateFerretDB,
  proxy: PrivateSwiftProxy,
  minPartSize: number,
): Promise<OpenRig> {
  const client = new MongoClient(ferret.url, MONGO_TIMEOUTS);
  await client.connect();
  const db = client.db(freshName("faults"));
  const catalog = new MongoCatalog(db, "blobstore");
  await catalog.ensureIndexes();
  const bucket = freshName("faults");
  const segments = `${bucket}_segments`;
  return {
    name: "MongoCatalog + SwiftBackend (Swift proxy and FerretDB killed)",
    store: new Store({
      catalog,
      backend: new SwiftBackend({
        ...swiftCredentials(proxy.authURL),
        bucket,
        timeoutMs: SWIFT_TIMEOUT_MS,
        retryDelayMs: 100,
      }),
      minPartSize,
    }),
    servers: [proxy, ferret],
    leftovers: async () =>
      (await swiftNames(proxy.authURL, segments)).map((n) =>
        `Swift segment ${n}`
      ),
    async close() {
      await dropContainer(proxy.authURL, bucket).catch(() => {});
      await dropContainer(proxy.authURL, segments).catch(() => {});
      await db.dropDatabase().catch(() => {});
      await client.close();
    },
  };
}
