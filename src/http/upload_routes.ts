/**
 * The multipart routes, mirroring the store's upload methods:
 * `POST /uploads`, `PUT /uploads/{id}/parts/{n}?hash=…&offset=…`,
 * `GET /uploads/{id}`, `POST /uploads/{id}/finish` and
 * `DELETE /uploads/{id}`.
 *
 * @module
 */

import { BadParamsError } from "../errors.ts";
import type { Part, UploadInfo } from "../multipart.ts";
import type { Store } from "../store.ts";
import { bodyStream, declaredSize, readSmallJson } from "./body.ts";
import { HttpError, jsonResponse } from "./errors.ts";
import type { MultipartBlobs } from "../multipart_blobs.ts";

/** The largest JSON document the upload routes read. */
const MAX_JSON_BYTES = 1 << 20;

/**
 * What an upload id in a path may be: the store makes 32 hex digits, the
 * Go charmstore 24; anything else cannot name an upload. Checking it here
 * keeps arbitrary client text out of catalog keys (Deno KV refuses keys
 * over 2 KiB, which would surface as a 500).
 */
const UPLOAD_ID_PATTERN = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * What the upload routes need to know about their mount and limits.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { UploadRouteOptions } from "./upload_routes.ts";
 *
 * const options: UploadRouteOptions = {
 *   maxBodySize: 2 ** 32,
 *   uploadTtl: 86_400_000,
 *   maxUploadTtl: 30 * 86_400_000,
 *   uploadPath: (id) => `/uploads/${id}`,
 *   blobPath: (hash) => `/blobs/${hash}`,
 * };
 * assert(options.uploadTtl === 86_400_000);
 * ```
 */
export interface UploadRouteOptions {
  /** The largest part body a `PUT` may declare. */
  maxBodySize: number;
  /** How long a new upload lives when the client names no expiry (ms). */
  uploadTtl: number;
  /** The furthest expiry a client may ask for, from now (ms). */
  maxUploadTtl: number;
  /** The path of an upload under the handler's prefix, for `Location`. */
  uploadPath(id: string): string;
  /** The path of a blob under the handler's prefix, for `Location`. */
  blobPath(hash: string): string;
  /** How long a body may stall before a 408, in ms (default 30 s). */
  bodyIdleTimeout?: number;
}

/**
 * `POST /uploads` with an optional `{"expires": "<RFC 3339 date>"}` body:
 * 201 with `{"id", "expires"}`.
 *
 * @example
 * ```ts ignore
 * const res = await createUpload(req, store, options);
 * ```
 */
export async function createUpload(
  req: Request,
  store: Store,
  options: UploadRouteOptions,
): Promise<Response> {
  const body = await readSmallJson(
    req,
    MAX_JSON_BYTES,
    options.bodyIdleTimeout,
  );
  const expires = requestedExpiry(body, options);
  const id = await store.newUpload(expires);
  return jsonResponse({ id, expires: expires.toISOString() }, 201, {
    location: options.uploadPath(id),
  });
}

/**
 * `PUT /uploads/{id}/parts/{n}?hash=…&offset=…`: streams the body into
 * `store.putPart`, the size from `Content-Length`. `offset` may be left
 * out (0) by a client sending parts in order. 200 with the part's record.
 *
 * @example
 * ```ts ignore
 * const res = await putPart(req, store, id, "0", url.searchParams, options);
 * ```
 */
export async function putPart(
  req: Request,
  store: Store,
  id: string,
  partText: string,
  params: URLSearchParams,
  options: UploadRouteOptions,
): Promise<Response> {
  checkUploadId(id);
  const part = integerParam("part number", partText);
  const hash = params.get("hash");
  if (hash === null) {
    throw new BadParamsError(
      "missing hash parameter (expected ?hash=<sha384>)",
    );
  }
  const offset = params.has("offset")
    ? integerParam("offset", params.get("offset")!)
    : 0;
  const size = declaredSize(req, options.maxBodySize);
  const body = bodyStream(req, options.bodyIdleTimeout);
  const record = await store.putPart(id, part, body, size, offset, hash);
  return jsonResponse({ part, ...record });
}

/**
 * `GET /uploads/{id}`: the upload's state as JSON.
 *
 * @example
 * ```ts ignore
 * const res = await getUpload(store, id);
 * ```
 */
export async function getUpload(store: Store, id: string): Promise<Response> {
  checkUploadId(id);
  return jsonResponse(uploadJson(id, await store.uploadInfo(id)));
}

/**
 * `POST /uploads/{id}/finish` with `{"parts": [{"hash": …}, …]}`: finishes
 * the upload and keeps its blob readable at `/blobs/{hash}`. 200 with
 * `{"hash", "size", "index"}`; finishing again gives the same answer.
 *
 * @example
 * ```ts ignore
 * const res = await finishUpload(req, blobs, id, options);
 * ```
 */
export async function finishUpload(
  req: Request,
  blobs: MultipartBlobs,
  id: string,
  options: UploadRouteOptions,
): Promise<Response> {
  checkUploadId(id);
  const parts = partsOf(
    await readSmallJson(req, MAX_JSON_BYTES, options.bodyIdleTimeout),
  );
  const { hash, index } = await blobs.finish(id, parts);
  const size = index.sizes.reduce((sum, n) => sum + n, 0);
  return jsonResponse({ hash, size, index }, 200, {
    location: options.blobPath(hash),
  });
}

/**
 * `DELETE /uploads/{id}`: removes an upload and its part records (204, also
 * when it was already gone): an unfinished one, a finished one that
 * nothing owns (a duplicate of a blob another upload serves), one owned by
 * someone else (as `Store.removeUpload` does). Only an upload the service
 * owns itself, `serviceOwner`, is refused with 409: its blob is being
 * served, and only `gc` releases it.
 *
 * @example
 * ```ts ignore
 * const res = await deleteUpload(store, id, SERVICE_OWNER);
 * ```
 */
export async function deleteUpload(
  store: Store,
  id: string,
  serviceOwner: string,
): Promise<Response> {
  checkUploadId(id);
  await store.removeUpload(id, {
    isOwnedBy: (_id, owner) => owner === serviceOwner, // else ConflictError
  });
  return new Response(null, { status: 204 });
}

/**
 * The JSON form of an upload's state.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { uploadJson } from "./upload_routes.ts";
 *
 * const json = uploadJson("u1", { parts: [null], expires: new Date(0) });
 * assert(json.expires === "1970-01-01T00:00:00.000Z");
 * ```
 */
export function uploadJson(id: string, info: UploadInfo): {
  id: string;
  expires: string;
  hash?: string;
  owner?: string;
  parts: UploadInfo["parts"];
} {
  return {
    id,
    expires: info.expires.toISOString(),
    ...(info.hash === undefined ? {} : { hash: info.hash }),
    ...(info.owner === undefined ? {} : { owner: info.owner }),
    parts: info.parts,
  };
}

function requestedExpiry(body: unknown, options: UploadRouteOptions): Date {
  const now = Date.now();
  if (body === undefined) return new Date(now + options.uploadTtl);
  const expires = (body as { expires?: unknown } | null)?.expires;
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new BadParamsError(
      `invalid upload request (expected a JSON object like {"expires": "2030-01-01T00:00:00Z"}, got ${
        JSON.stringify(body)
      })`,
    );
  }
  if (expires === undefined) return new Date(now + options.uploadTtl);
  const date = typeof expires === "string" ? new Date(expires) : undefined;
  if (!date || Number.isNaN(date.getTime())) {
    throw new BadParamsError(
      `invalid expires (expected an RFC 3339 date, got ${
        JSON.stringify(expires)
      })`,
    );
  }
  if (date.getTime() <= now || date.getTime() > now + options.maxUploadTtl) {
    throw new BadParamsError(
      `expires out of range (expected between now and ${
        new Date(now + options.maxUploadTtl).toISOString()
      }, got ${date.toISOString()})`,
    );
  }
  return date;
}

function partsOf(body: unknown): Part[] {
  const parts = (body as { parts?: unknown } | null | undefined)?.parts;
  if (
    !Array.isArray(parts) ||
    !parts.every((p) => typeof p?.hash === "string")
  ) {
    throw new BadParamsError(
      `invalid finish request (expected {"parts": [{"hash": "<sha384>"}, …]}, got ${
        JSON.stringify(body)?.slice(0, 200)
      })`,
    );
  }
  return parts.map((p: { hash: string }) => ({ hash: p.hash }));
}

function checkUploadId(id: string): void {
  if (!UPLOAD_ID_PATTERN.test(id)) {
    throw new BadParamsError(
      `invalid upload id (expected 1 to 128 of [A-Za-z0-9._~-], got ${
        JSON.stringify(id.length > 120 ? `${id.slice(0, 120)}…` : id)
      })`,
    );
  }
}

function integerParam(what: string, text: string): number {
  if (!/^\d{1,15}$/.test(text)) {
    throw new HttpError(
      400,
      "bad_params",
      `invalid ${what} (expected a non-negative integer, got ${
        JSON.stringify(text)
      })`,
    );
  }
  return Number(text);
}
