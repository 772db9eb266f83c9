/**
 * The stores the fault suite runs against, on its private servers: the
 * MongoDB seams on a private FerretDB, and the MongoDB catalog with the
 * Swift backend behind a private Swift proxy. Each rig also says how to
 * find bytes a backend's listing cannot show.
 *
 * @module
 */

import { type Db, MongoClient, type MongoClientOptions } from "mongodb";
import { SwiftBackend } from "../../src/swift/backend.ts";
import { SwiftAuth } from "../../src/swift/auth.ts";
import { MongoBackend } from "../../src/mongo/backend.ts";
import { MongoCatalog } from "../../src/mongo/catalog.ts";
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

/**
 * The Swift rig's segment size: small, so that most puts (up to the
 * workload's `maxPutSize`) and every part become Static Large Objects of
 * several segments, and a fault can strike between segments and manifest.
 */
export const SWIFT_SEGMENT_SIZE = 64 * 1024;

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

/**
 * Names in a Swift container (empty when it does not exist), page by page:
 * a segmented rig keeps thousands of segments, more than one listing page.
 */
export async function swiftNames(
  authURL: string,
  container: string,
): Promise<string[]> {
  const auth = new SwiftAuth(swiftCredentials(authURL));
  const { token, storageURL } = await auth.session();
  const names: string[] = [];
  for (;;) {
    const query = new URLSearchParams({
      format: "json",
      marker: names.at(-1) ?? "",
    });
    const res = await fetch(
      `${storageURL}/${encodeURIComponent(container)}?${query}`,
      { headers: { "X-Auth-Token": token } },
    );
    if (res.status === 404) {
      await res.body?.cancel();
      return names;
    }
    if (!res.ok) throw new Error(`listing ${container}: HTTP ${res.status}`);
    const page = (await res.json()) as { name: string }[];
    if (page.length === 0) return names;
    names.push(...page.map((o) => o.name));
  }
}

/**
 * The segments in `segments` that no manifest in `bucket` owns, grouped by
 * the blob they were written for (`<bucket>/<blob>/<8-digit index>`): what
 * a put killed between its segments and its manifest leaves. Read straight
 * from Swift, not through the backend's own listing, so the audit does not
 * trust the code it checks.
 */
export async function segmentsWithoutManifest(
  authURL: string,
  bucket: string,
  segments: string,
): Promise<Map<string, string[]>> {
  const manifests = new Set(await swiftNames(authURL, bucket));
  const orphans = new Map<string, string[]>();
  for (const segment of await swiftNames(authURL, segments)) {
    const blob = segment.startsWith(`${bucket}/`)
      ? /^(.+)\/\d{8}$/.exec(segment.slice(bucket.length + 1))?.[1]
      : undefined;
    if (blob !== undefined && manifests.has(blob)) continue;
    // anything else in the container is debris, whatever its name
    const key = blob ?? segment;
    orphans.set(key, [...orphans.get(key) ?? [], segment]);
  }
  return orphans;
}

/** Deletes a Swift container and everything in it. */
export async function dropContainer(
  authURL: string,
  container: string,
): Promise<void> {
  const auth = new SwiftAuth(swiftCredentials(authURL));
  const { token, storageURL } = await auth.session();
  const headers = { "X-Auth-Token": token };
  // A bulk delete per thousand names first (a segmented rig leaves
  // thousands of segments; one DELETE each would take a minute), then one
  // DELETE for each name it did not take.
  const all = await swiftNames(authURL, container);
  for (let i = 0; i < all.length; i += 1000) {
    const body = all.slice(i, i + 1000).map((name) =>
      `/${encodeURIComponent(container)}/${
        name.split("/").map(encodeURIComponent).join("/")
      }`
    ).join("\n");
    await (await fetch(`${storageURL}?bulk-delete`, {
      method: "POST",
      headers: { ...headers, "Content-Type": "text/plain" },
      body,
    })).body?.cancel();
  }
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
    leftovers: async () => ({ leaked: await danglingChunks(db, prefix) }),
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
  const unfinished = () =>
    segmentsWithoutManifest(proxy.authURL, bucket, segments);
  return {
    name: "MongoCatalog + SwiftBackend (Swift proxy and FerretDB killed)",
    store: new Store({
      catalog,
      backend: new SwiftBackend({
        ...swiftCredentials(proxy.authURL),
        bucket,
        timeoutMs: SWIFT_TIMEOUT_MS,
        retryDelayMs: 100,
        segmentSize: SWIFT_SEGMENT_SIZE,
      }),
      minPartSize,
    }),
    servers: [proxy, ferret],
    pieces: {
      size: SWIFT_SEGMENT_SIZE,
      label: "Static Large Objects",
      piece: "segments",
      unfinishedLabel: "segment sets without a manifest",
      unfinished: async () => [...(await unfinished()).keys()],
    },
    // Segments of a stored blob are its manifest's: only segments no
    // manifest owns are bytes the backend's listing would have to show.
    leftovers: async () => ({
      leaked: [...(await unfinished()).values()].flat().map((n) =>
        `Swift segment without a manifest ${n}`
      ),
    }),
    async close() {
      await dropContainer(proxy.authURL, bucket).catch(() => {});
      await dropContainer(proxy.authURL, segments).catch(() => {});
      await db.dropDatabase().catch(() => {});
      await client.close();
    },
  };
}
