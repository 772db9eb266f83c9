/**
 * What an `S3Backend` is configured with, and the checks made on it.
 *
 * @module
 */

import { BadParamsError } from "../errors.ts";
import type { FetchFn } from "../request.ts";

/** S3's least part size for every part of a multipart upload but the last. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;

/** S3's greatest part (and single PUT) size: 5 GiB. */
export const MAX_PART_SIZE = 5 * 1024 ** 3;

/** S3's greatest number of parts in one multipart upload. */
export const MAX_PARTS = 10_000;

/** The default part size: blobs above it go up as multipart uploads. */
export const DEFAULT_PART_SIZE = 64 * 1024 * 1024;

/**
 * Where and how an `S3Backend` stores blobs.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { S3Params } from "@blobstore/blobstore/s3";
 *
 * const params: S3Params = {
 *   endpoint: "http://127.0.0.1:9000", // MinIO
 *   region: "us-east-1",
 *   bucket: "blobs",
 *   accessKeyId: "minioadmin",
 *   secretAccessKey: "minioadmin",
 *   pathStyle: true,
 * };
 * assert(params.pathStyle);
 * ```
 */
export interface S3Params {
  /**
   * The service's URL: `https://s3.<region>.amazonaws.com` for AWS,
   * `https://<account>.r2.cloudflarestorage.com` for R2, a MinIO or Ceph
   * address. `AWS_ENDPOINT_URL_S3` is the usual variable for it.
   */
  endpoint: string;
  /** The region requests are signed for (`us-east-1`; R2 takes `auto`). */
  region: string;
  /** The bucket; created on first use when it does not exist. */
  bucket: string;
  /** The access key id. */
  accessKeyId: string;
  /** The secret access key: only ever used to sign, never sent or shown. */
  secretAccessKey: string;
  /** The session token of temporary credentials. */
  sessionToken?: string;
  /**
   * Address the bucket as the URL's first path segment
   * (`https://host/bucket/key`) rather than as a subdomain
   * (`https://bucket.host/key`). Default: path-style for endpoints that are
   * an IP address or `localhost`, virtual-hosted otherwise.
   */
  pathStyle?: boolean;
  /** A prefix for every key, like `"blobs/"` (default none). */
  prefix?: string;
  /**
   * The size of each part of a multipart upload, and the size above which
   * a blob goes up in parts (default 64 MiB; 5 MiB to 5 GiB). A blob may
   * have at most 10,000 parts, so the largest blob is 10,000 times this.
   */
  partSize?: number;
  /**
   * How a request body of known size streams: `"stream"` writes it as it
   * comes through `node:http` with its `Content-Length` (S3 refuses chunked
   * uploads, and `fetch` sends a stream chunked); `"buffer"` holds one part
   * in memory and sends it with `fetch`. Default: `"stream"` where the
   * runtime has `node:http` (Deno, Node, Bun) and no `fetch` is injected,
   * else `"buffer"`.
   */
  upload?: "stream" | "buffer";
  /** The `fetch` to use (default the global one). */
  fetch?: FetchFn;
  /** How long to wait for S3's answer or its next bytes, in ms (default 60 000). */
  timeoutMs?: number;
  /** How many times an idempotent request is retried (default 3). */
  retries?: number;
  /** The backoff before the first retry, in ms (default 200). */
  retryDelayMs?: number;
}

/**
 * Checks `params` and returns the part size to use.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { checkParams } from "./params.ts";
 *
 * const base = { endpoint: "http://127.0.0.1:9000", region: "us-east-1", bucket: "blobs", accessKeyId: "k", secretAccessKey: "s" };
 * assert.strictEqual(checkParams(base), 64 * 1024 * 1024);
 * assert.throws(() => checkParams({ ...base, partSize: 1024 }), /partSize/);
 * ```
 */
export function checkParams(params: S3Params): number {
  for (
    const name of [
      "endpoint",
      "region",
      "bucket",
      "accessKeyId",
      "secretAccessKey",
    ] as const
  ) {
    if (typeof params[name] !== "string" || params[name] === "") {
      throw new BadParamsError(
        `S3Backend needs ${name} (expected a non-empty string, got ${
          name === "secretAccessKey" ? "none" : JSON.stringify(params[name])
        })`,
      );
    }
  }
  let url: URL;
  try {
    url = new URL(params.endpoint);
  } catch {
    throw new BadParamsError(
      `invalid S3 endpoint (expected an http(s) URL, got ${
        JSON.stringify(params.endpoint)
      })`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new BadParamsError(
      `invalid S3 endpoint (expected http or https, got ${url.protocol})`,
    );
  }
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(params.bucket)) {
    throw new BadParamsError(
      `invalid S3 bucket name (expected 3-63 of [a-z0-9.-], got ${
        JSON.stringify(params.bucket)
      })`,
    );
  }
  const partSize = params.partSize ?? DEFAULT_PART_SIZE;
  if (
    !Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE ||
    partSize > MAX_PART_SIZE
  ) {
    throw new BadParamsError(
      `invalid partSize (expected ${MIN_PART_SIZE} to ${MAX_PART_SIZE} bytes, got ${partSize})`,
    );
  }
  return partSize;
}

/**
 * Whether the bucket goes in the path: as asked, else for endpoints that
 * cannot carry a bucket subdomain (an IP address, `localhost`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { usesPathStyle } from "./params.ts";
 *
 * assert(usesPathStyle(new URL("http://127.0.0.1:9000")));
 * assert(!usesPathStyle(new URL("https://s3.us-east-1.amazonaws.com")));
 * assert(usesPathStyle(new URL("https://s3.example.com"), true));
 * ```
 */
export function usesPathStyle(endpoint: URL, pathStyle?: boolean): boolean {
  if (pathStyle !== undefined) return pathStyle;
  const host = endpoint.hostname;
  return host === "localhost" || /^\d+\.\d+\.\d+\.\d+$/.test(host) ||
    host.startsWith("[");
}
