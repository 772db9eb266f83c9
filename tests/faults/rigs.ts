/**
 * The stores the fault suite runs against, on its private servers: the
 * MongoDB seams on a private FerretDB, the MongoDB catalog with the Swift
 * backend behind a private Swift proxy, and an in-memory catalog with the
 * S3 backend behind a private Swift proxy speaking S3 (s3api). Each rig
 * also says how to find bytes a backend's listing cannot show.
 *
 * @module
 */

import { type Db, MongoClient, type MongoClientOptions } from "mongodb";
import { SwiftBackend } from "../../src/swift/backend.ts";
import { SwiftAuth } from "../../src/swift/auth.ts";
import { MongoBackend } from "../../src/mongo/backend.ts";
import { MongoCatalog } from "../../src/mongo/catalog.ts";
import { MemoryCatalog } from "../../src/memory/catalog.ts";
import { S3Backend } from "../../src/s3/backend.ts";
import { S3Client } from "../../src/s3/client.ts";
import { MIN_PART_SIZE, type S3Params } from "../../src/s3/params.ts";
import { elements, text } from "../../src/s3/xml.ts";
import { Store } from "../../src/store.ts";
import { S3_ACCESS_KEY, S3_REGION, S3_SECRET_KEY } from "../services.ts";
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

/** The S3 rig's part size: S3's (and s3api's) least, so that blobs above 5 MiB go up as multipart uploads. */
export const S3_PART_SIZE = MIN_PART_SIZE;

/** S3's per-request limit in the suite (a frozen proxy fails requests after it). */
export const S3_TIMEOUT_MS = 5000;

/**
 * How long after a multipart upload starts a zero-grace sweep can take it:
 * s3api rounds an upload's `Initiated` time up to the next second, so an
 * upload begun just now looks as if begun up to a second from now.
 */
export const S3_INITIATED_ROUNDING_MS = 1100;

/** The S3 parameters of bucket `bucket` behind `proxy` (an s3api proxy). */
export function s3Params(proxy: PrivateSwiftProxy, bucket: string): S3Params {
  return {
    endpoint: proxy.endpoint,
    region: S3_REGION,
    bucket,
    accessKeyId: S3_ACCESS_KEY,
    secretAccessKey: S3_SECRET_KEY,
    pathStyle: true,
    partSize: S3_PART_SIZE,
    timeoutMs: S3_TIMEOUT_MS,
    retryDelayMs: 100,
  };
}

/** Sends a signed GET on the bucket and returns the XML answer. */
async function s3Get(
  client: S3Client,
  operation: string,
  query: Record<string, string>,
): Promise<string> {
  const res = await client.send(operation, { method: "GET", query });
  if (!res.ok) throw await client.errorFrom(operation, res);
  return await client.readText(res, operation);
}

/**
 * The bucket's incomplete multipart uploads as `<key> <upload id>`, from
 * signed `GET ?uploads` listings page by page: read straight from the S3
 * API, not through `S3Backend.list`, so the audit does not trust the code
 * it checks.
 */
export async function s3IncompleteUploads(client: S3Client): Promise<string[]> {
  const uploads: string[] = [];
  let markers: Record<string, string> = {};
  for (;;) {
    const xml = await s3Get(client, "list multipart uploads", {
      uploads: "",
      ...markers,
    });
    for (const upload of elements(xml, "Upload")) {
      uploads.push(`${text(upload, "Key")} ${text(upload, "UploadId")}`);
    }
    if (text(xml, "IsTruncated") !== "true") return uploads;
    markers = {
      "key-marker": text(xml, "NextKeyMarker") ?? "",
      "upload-id-marker": text(xml, "NextUploadIdMarker") ?? "",
    };
  }
}

/** The bucket's object keys, from signed `ListObjectsV2` page by page. */
export async function s3Keys(client: S3Client): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const xml = await s3Get(client, "list objects", {
      "list-type": "2",
      ...(token === undefined ? {} : { "continuation-token": token }),
    });
    for (const entry of elements(xml, "Contents")) {
      keys.push(text(entry, "Key") ?? "");
    }
    token = text(xml, "IsTruncated") === "true"
      ? text(xml, "NextContinuationToken")
      : undefined;
  } while (token !== undefined);
  return keys;
}

/**
 * The part segments s3api keeps in Swift's `<bucket>+segments` container
 * (`<key>/<upload id>/<part number>`, beside each incomplete upload's
 * marker `<key>/<upload id>`) that neither an incomplete upload nor an
 * object of the bucket owns: bytes no S3 listing shows (s3api's abort
 * deletes the marker before the parts, so a proxy killed in between
 * leaves them), read with Swift's own API on the same proxy.
 */
export async function s3apiStraySegments(
  proxy: PrivateSwiftProxy,
  bucket: string,
  objects: ReadonlySet<string>,
): Promise<string[]> {
  const names = await swiftNames(proxy.authURL, `${bucket}+segments`);
  const markers = new Set(names.filter((n) => n.split("/").length === 2));
  return names.filter((name) => {
    const [key, uploadId, part] = name.split("/");
    if (part === undefined) return false; // a marker: an incomplete upload
    return !markers.has(`${key}/${uploadId}`) && !objects.has(key);
  });
}

/**
 * `MemoryCatalog` + `S3Backend` through `proxy`, a private Swift proxy
 * speaking S3 (s3api): every fault strikes the S3 path, since the catalog
 * lives in this process. Parts of {@linkcode S3_PART_SIZE} (S3's least),
 * so that puts above it are multipart uploads, and the sweep can find
 * incomplete ones.
 */
export function s3Rig(proxy: PrivateSwiftProxy, minPartSize: number): OpenRig {
  const bucket = freshName("faults").replaceAll("_", "-");
  const params = s3Params(proxy, bucket);
  const client = new S3Client(params);
  return {
    name: "MemoryCatalog + S3Backend (Swift s3api proxy killed)",
    store: new Store({
      catalog: new MemoryCatalog(),
      backend: new S3Backend(params),
      minPartSize,
    }),
    servers: [proxy],
    pieces: {
      size: S3_PART_SIZE,
      label: "S3 multipart uploads",
      piece: "parts",
      unfinishedLabel: "incomplete multipart uploads",
      unfinished: () => s3IncompleteUploads(client),
    },
    sweepDelayMs: S3_INITIATED_ROUNDING_MS,
    async leftovers(named) {
      // After the final sweep, listed straight from the S3 API: every
      // incomplete upload is a leak (no reference can name one), and so is
      // every object no reference names. s3api's own part segments that
      // no S3 listing shows are counted, not failed: no S3 client can see
      // or remove them, so they are Swift's to clear, not the backend's.
      const keys = await s3Keys(client);
      const uploads = await s3IncompleteUploads(client);
      const unreferenced = keys.filter((key) => !named.has(key));
      const stray = await s3apiStraySegments(proxy, bucket, new Set(keys));
      return {
        leaked: [
          ...unreferenced.map((key) => `S3 object no reference names ${key}`),
          ...uploads.map((u) => `S3 incomplete multipart upload ${u}`),
        ],
        counts: {
          objects: keys.length,
          "unreferenced objects": unreferenced.length,
          "incomplete multipart uploads": uploads.length,
          "s3api part segments no upload or object owns": stray.length,
        },
      };
    },
    async close() {
      // Swift's own API drops everything, s3api's segments container too.
      await dropContainer(proxy.authURL, bucket).catch(() => {});
      await dropContainer(proxy.authURL, `${bucket}+segments`).catch(() => {});
    },
  };
}
