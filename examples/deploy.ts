/**
 * The blob store as a Deno Deploy app: one file, no server to run.
 *
 * Deno Deploy provides `Deno.openKv()` (the app's hosted KV, shared by every
 * isolate) and runs the `fetch` of the default export. Blob references,
 * uploads and, by default, the bytes all live in that KV, so a multipart
 * upload may send its parts and its finish to different isolates, and any
 * isolate serves the finished blob by its hash.
 *
 * The environment it reads (nothing else):
 *
 * - `BLOBSTORE_KV_PATH`: a KV file to open instead of the default one
 *   (locally; leave it unset on Deploy);
 * - `BLOBSTORE_TOKEN`: when set, writes need `Authorization: Bearer <token>`;
 * - `BLOBSTORE_CORS_ORIGINS`: origins whose pages may call the service
 *   (comma-separated, or `*`; CORS is off when unset or unreadable);
 * - `BLOBSTORE_MAX_PARTS`: the most parts an upload may have, 1 to 10,000
 *   (400 when unset; anything else stops the start);
 * - `S3_BUCKET`: keep the bytes in S3 (or R2, MinIO…) instead, with
 *   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
 *   `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`;
 * - `SWIFT_AUTH_URL`: keep the bytes in OpenStack Swift instead, with
 *   `SWIFT_USERNAME`, `SWIFT_SECRET`, `SWIFT_BUCKET` and optionally
 *   `SWIFT_TENANT`, `SWIFT_REGION`, `SWIFT_ENDPOINT_URL`.
 *
 * Locally, from the project root (its deno.json maps `@blobstore/blobstore`;
 * in this repository the package's own name does), with the least
 * permissions: `deno serve` may listen on its own port without
 * `--allow-net`; S3 or Swift need `--allow-net` to reach them, and their
 * variables in `--allow-env`.
 *
 * ```sh
 * mkdir -p data && BLOBSTORE_KV_PATH=./data/deploy.kv deno serve --port 8000 \
 *   --unstable-kv \
 *   --allow-env=BLOBSTORE_KV_PATH,BLOBSTORE_TOKEN,BLOBSTORE_CORS_ORIGINS,BLOBSTORE_MAX_PARTS,S3_BUCKET,SWIFT_AUTH_URL \
 *   --allow-read=./data/deploy.kv --allow-write=./data/deploy.kv \
 *   examples/deploy.ts
 * ```
 *
 * @module
 */

import { type Backend, Store } from "@blobstore/blobstore";
import { KvBackend, KvCatalog } from "@blobstore/blobstore/kv";
import { createHandler } from "@blobstore/blobstore/http";

const env = (name: string) => Deno.env.get(name) || undefined;
const need = (name: string, by: string) => {
  const value = env(name);
  if (!value) throw new Error(`${name} is not set (${by} needs it)`);
  return value;
};

/** The bytes' home: S3 or Swift when configured (loaded only then), else KV. */
async function openBackend(kv: Deno.Kv): Promise<Backend> {
  const bucket = env("S3_BUCKET");
  if (bucket) {
    const { S3Backend } = await import("@blobstore/blobstore/s3");
    const region = env("AWS_REGION") ?? "us-east-1";
    return new S3Backend({
      bucket,
      region,
      endpoint: env("AWS_ENDPOINT_URL_S3") ??
        `https://s3.${region}.amazonaws.com`,
      accessKeyId: need("AWS_ACCESS_KEY_ID", "S3_BUCKET"),
      secretAccessKey: need("AWS_SECRET_ACCESS_KEY", "S3_BUCKET"),
      sessionToken: env("AWS_SESSION_TOKEN"),
    });
  }
  const authURL = env("SWIFT_AUTH_URL");
  if (authURL) {
    const { SwiftBackend } = await import("@blobstore/blobstore/swift");
    return new SwiftBackend({
      authURL,
      username: need("SWIFT_USERNAME", "SWIFT_AUTH_URL"),
      secret: need("SWIFT_SECRET", "SWIFT_AUTH_URL"),
      bucket: need("SWIFT_BUCKET", "SWIFT_AUTH_URL"),
      tenant: env("SWIFT_TENANT"),
      region: env("SWIFT_REGION"),
      endpointURL: env("SWIFT_ENDPOINT_URL"),
    });
  }
  return new KvBackend(kv);
}

// On Deploy: the app's hosted KV. Locally: a SQLite file that several
// `deno serve` processes may share, as isolates share the hosted KV.
const kv = await Deno.openKv(env("BLOBSTORE_KV_PATH"));
const store = new Store({
  catalog: new KvCatalog(kv), // its multipart registry lives in the same KV
  backend: await openBackend(kv),
  maxParts: maxPartsFromEnv(),
});

export default {
  // Reads BLOBSTORE_TOKEN (auth for writes) and BLOBSTORE_CORS_ORIGINS.
  fetch: createHandler(store),
} satisfies Deno.ServeDefaultExport;

/** `BLOBSTORE_MAX_PARTS`: 1 to 10,000 (S3's limit too), else the default. */
function maxPartsFromEnv(): number | undefined {
  const text = env("BLOBSTORE_MAX_PARTS");
  if (text === undefined) return undefined;
  const count = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(count >= 1 && count <= 10_000)) {
    throw new Error(
      `invalid BLOBSTORE_MAX_PARTS ${
        JSON.stringify(text)
      } (expected a whole number from 1 to 10000)`,
    );
  }
  return count;
}
