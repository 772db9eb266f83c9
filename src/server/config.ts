/**
 * Which catalog and backend the server and the CLI use, picked from
 * options and the environment (each catalog keeps its own multipart
 * registry, `Catalog.multipart`):
 *
 * - the embedded default: a `KvCatalog` in `<data>/catalog.kv` (Deno KV on
 *   SQLite, shared safely by a server and CLI processes) and a
 *   `FileBackend` under `<data>/blobs`;
 * - `MONGODB_URL`: the MongoDB catalog and GridFS backend, in the URL's
 *   database or `blobstore`;
 * - `S3_BUCKET` (with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
 *   optionally `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL_S3`,
 *   `S3_PATH_STYLE`): the S3 backend, beside the catalog picked as above;
 * - `SWIFT_AUTH_URL` (with `SWIFT_USERNAME`, `SWIFT_SECRET`, `SWIFT_BUCKET`
 *   and optionally `SWIFT_TENANT`, `SWIFT_REGION`, `SWIFT_ENDPOINT_URL`,
 *   and `SWIFT_TEMP_URL_KEY`, the account's TempURL key, for redirects):
 *   the Swift backend, beside the MongoDB catalog when `MONGODB_URL` is set
 *   too, else beside the KV catalog;
 * - `memory: true`: everything in memory, gone when the process ends.
 *
 * The store over them takes uploads of up to `maxParts` parts, else
 * `BLOBSTORE_MAX_PARTS`, else 400 (Go's default): at most 10,000, S3's
 * limit, which every catalog holds (about 1.6 MB as one MongoDB document;
 * 157 pages in Deno KV), and hashes where `BLOBSTORE_HASHING` says (`auto`,
 * the default: on worker threads for bodies of 4 MiB or more; `inline`;
 * `worker`).
 *
 * The MongoDB and Swift modules are loaded with `import()` only when they
 * are configured, so nobody else loads a driver.
 *
 * @module
 */

import { join, resolve } from "node:path";
import type { Backend } from "../backend.ts";
import { BadParamsError } from "../errors.ts";
import type { Hashing } from "../hashing.ts";
import { MemoryBackend } from "../memory/backend.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { Store } from "../store.ts";
import { type CatalogSide, redact, type Seams } from "./seams.ts";

/**
 * How to pick the seams.
 */
export interface SeamOptions {
  /** The data directory of the embedded default. */
  data: string;
  /** Reads an environment variable (default `Deno.env.get`). */
  env?: (name: string) => string | undefined;
  /** Keep everything in memory instead (nothing persists). */
  memory?: boolean;
  /**
   * The most parts an upload may have (the store's `maxParts`), 1 to
   * {@linkcode MAX_PARTS_LIMIT}; default `BLOBSTORE_MAX_PARTS`, else 400.
   */
  maxParts?: number;
}

/**
 * The most a store's `maxParts` may be set to here: S3's limit on the
 * parts of one upload, so a client written for S3 fits, and within what
 * every catalog holds.
 */
export const MAX_PARTS_LIMIT = 10_000;

/** The store's own default, Go's. */
const DEFAULT_MAX_PARTS = 400;

/**
 * The part count `text` says (`what` names where it came from, for the
 * message): a whole number from 1 to {@linkcode MAX_PARTS_LIMIT}, else a
 * `BadParamsError` saying what was expected and what was got.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseMaxParts } from "./config.ts";
 *
 * assert.strictEqual(parseMaxParts("10000", "--max-parts"), 10_000);
 * assert.throws(() => parseMaxParts("10001", "--max-parts"), /from 1 to 10000/);
 * ```
 */
export function parseMaxParts(text: string, what: string): number {
  const trimmed = text.trim();
  const count = /^\d+$/.test(trimmed) ? Number(trimmed) : NaN;
  if (!(count >= 1 && count <= MAX_PARTS_LIMIT)) {
    throw new BadParamsError(
      `invalid ${what} ${
        JSON.stringify(text)
      } (expected a whole number from 1 to ${MAX_PARTS_LIMIT})`,
    );
  }
  return count;
}

/**
 * `BLOBSTORE_HASHING`: where the store hashes (`auto`, the default: on
 * worker threads for large bodies; `inline`; `worker`).
 */
function hashingOf(env: (name: string) => string | undefined): Hashing {
  const text = env("BLOBSTORE_HASHING") || "auto";
  if (text === "auto" || text === "inline" || text === "worker") return text;
  throw new BadParamsError(
    `invalid BLOBSTORE_HASHING ${
      JSON.stringify(text)
    } (expected auto, inline or worker)`,
  );
}

/** `options.maxParts`, else `BLOBSTORE_MAX_PARTS`, else the default. */
function maxPartsOf(
  options: SeamOptions,
  env: (name: string) => string | undefined,
): number {
  if (options.maxParts !== undefined) {
    return parseMaxParts(String(options.maxParts), "maxParts");
  }
  const text = env("BLOBSTORE_MAX_PARTS");
  return text ? parseMaxParts(text, "BLOBSTORE_MAX_PARTS") : DEFAULT_MAX_PARTS;
}

/**
 * Opens the seams that `options` and the environment call for (see the
 * module documentation). The data directory is created when the embedded
 * default needs it.
 *
 * @example Throwaway seams
 * ```ts
 * import assert from "node:assert";
 * import { openSeams } from "./config.ts";
 *
 * const seams = await openSeams({ data: "unused", memory: true });
 * assert(seams.description.catalog === "memory");
 * await seams.close();
 * ```
 */
export async function openSeams(options: SeamOptions): Promise<Seams> {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  // Checked first: a bad setting fails before anything is opened.
  const maxParts = maxPartsOf(options, env);
  const hashing = hashingOf(env);
  const data = resolve(options.data);
  const closers: (() => Promise<void> | void)[] = [];
  const close = async () => {
    for (const closer of closers.reverse()) await closer();
  };
  try {
    let seams: Omit<Seams, "store" | "close">;
    if (options.memory) {
      seams = {
        catalog: new MemoryCatalog(),
        backend: new MemoryBackend(),
        description: { catalog: "memory", backend: "memory" },
      };
    } else {
      const mongoUrl = env("MONGODB_URL");
      const catalogSide = mongoUrl
        ? await openMongo(mongoUrl, closers)
        : await openKv(data, closers);
      const bytes = env("S3_BUCKET")
        ? await openS3(env)
        : env("SWIFT_AUTH_URL")
        ? await openSwift(env)
        : undefined;
      seams = {
        catalog: catalogSide.catalog,
        backend: bytes?.backend ?? catalogSide.backend,
        description: {
          catalog: catalogSide.description.catalog,
          backend: bytes?.description ?? catalogSide.description.backend,
          dataDir: mongoUrl ? undefined : data,
        },
      };
    }
    return {
      ...seams,
      store: new Store({
        catalog: seams.catalog,
        backend: seams.backend,
        maxParts,
        hashing,
      }),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

async function openKv(
  data: string,
  closers: (() => Promise<void> | void)[],
): Promise<CatalogSide> {
  const [{ KvCatalog }, { FileBackend }] = await Promise.all([
    import("../kv/catalog.ts"),
    import("../fs/backend.ts"),
  ]);
  await Deno.mkdir(data, { recursive: true });
  const kvPath = join(data, "catalog.kv");
  const kv = await Deno.openKv(kvPath);
  closers.push(() => kv.close());
  const blobs = join(data, "blobs");
  return {
    catalog: new KvCatalog(kv),
    backend: new FileBackend(blobs),
    description: {
      catalog: `Deno KV in ${kvPath}`,
      backend: `files under ${blobs}`,
    },
  };
}

/**
 * The module that opens the MongoDB seams, named through a URL Deno cannot
 * follow ahead of time: the MongoDB driver is neither downloaded nor
 * loaded unless `MONGODB_URL` is set.
 */
const MONGO_SEAMS = new URL("./mongo_seams.ts", import.meta.url).href;

async function openMongo(
  url: string,
  closers: (() => Promise<void> | void)[],
): Promise<CatalogSide> {
  const seams: typeof import("./mongo_seams.ts") = await import(MONGO_SEAMS);
  return await seams.openMongo(url, closers);
}

async function openSwift(
  env: (name: string) => string | undefined,
): Promise<{ backend: Backend; description: string }> {
  const required = [
    "SWIFT_AUTH_URL",
    "SWIFT_USERNAME",
    "SWIFT_SECRET",
    "SWIFT_BUCKET",
  ];
  const missing = required.filter((name) => !env(name));
  if (missing.length > 0) {
    throw new Error(
      `incomplete Swift configuration (expected ${
        required.join(", ")
      }; missing ${missing.join(", ")})`,
    );
  }
  const { SwiftBackend } = await import("../swift/backend.ts");
  const bucket = env("SWIFT_BUCKET")!;
  const authURL = env("SWIFT_AUTH_URL")!;
  return {
    backend: new SwiftBackend({
      authURL,
      endpointURL: env("SWIFT_ENDPOINT_URL") || undefined,
      bucket,
      region: env("SWIFT_REGION") || undefined,
      secret: env("SWIFT_SECRET")!,
      tenant: env("SWIFT_TENANT") || undefined,
      username: env("SWIFT_USERNAME")!,
      tempUrlKey: env("SWIFT_TEMP_URL_KEY") || undefined,
    }),
    description: `Swift container ${bucket} (auth ${redact(authURL)})`,
  };
}

/**
 * The S3 backend from the AWS conventions: `AWS_ACCESS_KEY_ID`,
 * `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION` (default
 * `us-east-1`), `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`; default AWS
 * S3 in the region), plus `S3_BUCKET` and `S3_PATH_STYLE` (`true` or
 * `false`; default: path-style for an IP address or localhost).
 */
async function openS3(
  env: (name: string) => string | undefined,
): Promise<{ backend: Backend; description: string }> {
  const required = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET"];
  const missing = required.filter((name) => !env(name));
  if (missing.length > 0) {
    throw new Error(
      `incomplete S3 configuration (expected ${required.join(", ")}; missing ${
        missing.join(", ")
      })`,
    );
  }
  const region = env("AWS_REGION") || env("AWS_DEFAULT_REGION") ||
    "us-east-1";
  const endpoint = env("AWS_ENDPOINT_URL_S3") || env("AWS_ENDPOINT_URL") ||
    `https://s3.${region}.amazonaws.com`;
  const pathStyle = env("S3_PATH_STYLE");
  const bucket = env("S3_BUCKET")!;
  const { S3Backend } = await import("../s3/backend.ts");
  return {
    backend: new S3Backend({
      endpoint,
      region,
      bucket,
      accessKeyId: env("AWS_ACCESS_KEY_ID")!,
      secretAccessKey: env("AWS_SECRET_ACCESS_KEY")!,
      sessionToken: env("AWS_SESSION_TOKEN") || undefined,
      pathStyle: pathStyle ? pathStyle === "true" : undefined,
    }),
    description: `S3 bucket ${bucket} at ${redact(endpoint)}`,
  };
}
