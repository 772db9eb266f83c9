/**
 * What a Swift backend is configured with, and the checks that refuse a
 * bad configuration before anything is sent.
 *
 * @module
 */

import { BadParamsError } from "../errors.ts";
import type { FetchFn } from "../request.ts";
import type { SwiftCredentials } from "./auth.ts";

/**
 * Swift's default object size limit (`max_file_size`, 5 GiB + 2 bytes),
 * rounded down: the default segment size, above which a blob becomes a
 * Static Large Object.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { DEFAULT_SEGMENT_SIZE } from "@blobstore/blobstore/swift";
 *
 * assert(DEFAULT_SEGMENT_SIZE === 5 * 1024 ** 3);
 * ```
 */
export const DEFAULT_SEGMENT_SIZE = 5 * 1024 ** 3;

/**
 * How to reach Swift and where to keep the blobs. The first seven fields are
 * those of the Go charmstore's Swift configuration.
 *
 * @example Keystone v3
 * ```ts
 * import assert from "node:assert";
 * import type { SwiftParams } from "@blobstore/blobstore/swift";
 *
 * const params: SwiftParams = {
 *   authURL: "https://keystone.example.com:5000/v3",
 *   username: "blobstore",
 *   secret: "password",
 *   tenant: "blobstore-project",
 *   region: "RegionOne",
 *   bucket: "blobs",
 * };
 * assert(params.bucket === "blobs");
 * ```
 */
export interface SwiftParams extends SwiftCredentials {
  /** The container the blobs live in; created on first use if missing. */
  bucket: string;
  /** The `fetch` to call (default: the global one), e.g. a wrapped one in tests. */
  fetch?: FetchFn;
  /**
   * How long to wait for Swift or Keystone, in ms (default 60 000): for an
   * answer once a request is fully sent, for the next bytes of an answer's
   * body, and for Swift to take the next bytes of a put's body. Bodies
   * otherwise stream without a limit, at the pace of their producer or
   * consumer: only time spent waiting on the server counts.
   */
  timeoutMs?: number;
  /**
   * How many times an idempotent request (GET, HEAD, DELETE, and the token
   * fetch) is retried after a connection error or a 5xx answer (default 3;
   * 0 never retries). Puts are never retried: their body is a one-shot
   * stream, and the caller decides whether to send it again.
   */
  retries?: number;
  /**
   * The backoff before the first retry in ms, doubled for each next one up
   * to 16 times it, with random jitter (default 200).
   */
  retryDelayMs?: number;
  /**
   * Blobs larger than this are written as segments of at most this size
   * plus a Static Large Object manifest (default {@linkcode DEFAULT_SEGMENT_SIZE};
   * at most 1000 segments per blob).
   */
  segmentSize?: number;
  /**
   * The container for SLO segments (default `<bucket>_segments`). Segment
   * names start with `<bucket>/`, so several buckets may share one.
   */
  segmentContainer?: string;
  /**
   * The account's TempURL key: with it, the backend has `signedUrl`, which
   * hands out URLs that let anyone GET a blob straight from Swift for a
   * while (Swift's `tempurl` middleware must be in the proxy's pipeline).
   * Swift accepts them only while the account's
   * `X-Account-Meta-Temp-URL-Key` (or `…-Key-2`) is this key: the operator
   * sets it (`swift post -m Temp-URL-Key:<key>`), or
   * `SwiftBackend.ensureTempUrlKey` does, as the account's owner. Treat
   * it as a secret: it signs reads of every object of the account.
   * Default: none, and no `signedUrl`.
   */
  tempUrlKey?: string;
  /**
   * The HMAC digest of TempURLs (default `"sha256"`); it must be among the
   * middleware's `allowed_digests` (`GET /info`).
   */
  tempUrlDigest?: "sha256" | "sha512";
}

/**
 * Where a backend keeps its blobs, from checked parameters.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { Layout } from "./params.ts";
 *
 * const layout: Layout = { container: "b", segmentContainer: "b_segments", segmentSize: 1024 };
 * assert(layout.segmentSize === 1024);
 * ```
 */
export interface Layout {
  /** The container of the blobs (and of the manifests of large ones). */
  container: string;
  /** The container of the segments of large blobs. */
  segmentContainer: string;
  /** The largest object; larger blobs are cut into segments of this size. */
  segmentSize: number;
}

/**
 * Checks `params` and returns the layout they describe; throws a
 * `BadParamsError` saying what is wrong (never showing the secret).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { BadParamsError } from "../errors.ts";
 * import { checkParams } from "./params.ts";
 *
 * const params = { authURL: "http://127.0.0.1:1/auth/v1.0", username: "u", secret: "s", bucket: "b" };
 * assert(checkParams(params).segmentContainer === "b_segments");
 * assert.throws(() => checkParams({ ...params, segmentContainer: "b" }), BadParamsError);
 * ```
 */
export function checkParams(params: SwiftParams): Layout {
  const container = checkContainer("bucket", params.bucket);
  const segmentContainer = checkContainer(
    "segmentContainer",
    params.segmentContainer ?? `${params.bucket}_segments`,
  );
  if (segmentContainer === container) {
    throw new BadParamsError(
      `segmentContainer must differ from bucket (got "${container}" for both)`,
    );
  }
  const segmentSize = params.segmentSize ?? DEFAULT_SEGMENT_SIZE;
  if (!Number.isSafeInteger(segmentSize) || segmentSize < 1) {
    throw new BadParamsError(
      `invalid segmentSize (expected a positive integer, got ${params.segmentSize})`,
    );
  }
  const retries = params.retries ?? 3;
  if (!Number.isSafeInteger(retries) || retries < 0) {
    throw new BadParamsError(
      `invalid retries (expected a non-negative integer, got ${params.retries})`,
    );
  }
  if (params.tempUrlKey !== undefined && params.tempUrlKey === "") {
    throw new BadParamsError(
      "invalid Swift tempUrlKey (expected a non-empty string or none)",
    );
  }
  const digest = params.tempUrlDigest;
  if (digest !== undefined && digest !== "sha256" && digest !== "sha512") {
    throw new BadParamsError(
      `invalid Swift tempUrlDigest (expected "sha256" or "sha512", got ${
        JSON.stringify(digest)
      })`,
    );
  }
  for (const field of ["authURL", "username", "secret"] as const) {
    if (!params[field]) {
      throw new BadParamsError(
        `missing Swift ${field} (expected a non-empty string, got ${
          JSON.stringify(field === "secret" ? "" : params[field])
        })`,
      );
    }
  }
  return { container, segmentContainer, segmentSize };
}

function checkContainer(field: string, name: string | undefined): string {
  if (!name || name.includes("/") || name.length > 256) {
    throw new BadParamsError(
      `invalid Swift ${field} (expected a container name: 1 to 256 characters without "/", got ${
        JSON.stringify(name)
      })`,
    );
  }
  return name;
}
