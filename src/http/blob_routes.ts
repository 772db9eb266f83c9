/**
 * `GET`, `HEAD` and `PUT /blobs/{sha384}`: whole blobs, by hash, streamed
 * both ways.
 *
 * @module
 */

import type { Backend } from "../backend.ts";
import { checkHash } from "../digest.ts";
import { BadParamsError, NotFoundError, SizeMismatchError } from "../errors.ts";
import { bodyStream, declaredSize } from "./body.ts";
import { HttpError, jsonResponse } from "./errors.ts";
import type { FoundBlob, MultipartBlobs } from "../multipart_blobs.ts";
import { type RangeSpec, resolveRangeSpec } from "../range.ts";
import { parseRangeHeader } from "./range.ts";
import { reprDigestSha384 } from "./repr_digest.ts";

/**
 * What the blob routes need to know about their mount.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { BlobRouteOptions } from "./blob_routes.ts";
 *
 * const options: BlobRouteOptions = {
 *   maxBodySize: 2 ** 32,
 *   cacheControl: "public, max-age=31536000, immutable",
 *   blobPath: (hash) => `/blobs/${hash}`,
 * };
 * assert(options.blobPath("x") === "/blobs/x");
 * ```
 */
export interface BlobRouteOptions {
  /** The largest body a `PUT` may declare. */
  maxBodySize: number;
  /** The `Cache-Control` of blob responses. */
  cacheControl: string;
  /** The path of a blob under the handler's prefix, for `Location`. */
  blobPath(hash: string): string;
  /** How long a body may stall before a 408, in ms (default 30 s). */
  bodyIdleTimeout?: number;
  /**
   * Answer a `GET` of a single blob with a 307 to the backend's signed URL,
   * valid for `expiresIn` seconds (see {@linkcode redirectOptions});
   * `undefined` streams every blob.
   */
  redirect?: { expiresIn: number };
}

/**
 * How long a redirect's signed URL stays valid by default, in seconds.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { DEFAULT_REDIRECT_EXPIRES_IN } from "./blob_routes.ts";
 *
 * assert(DEFAULT_REDIRECT_EXPIRES_IN === 300);
 * ```
 */
export const DEFAULT_REDIRECT_EXPIRES_IN = 300;

/**
 * The `redirect` of {@linkcode BlobRouteOptions} from `createHandler`'s
 * option: `undefined` when off, or when `backend` has no `signedUrl`
 * (it streams then, as without the option). `true` means the default
 * expiry, {@linkcode DEFAULT_REDIRECT_EXPIRES_IN}. Throws a
 * `BadParamsError` for an `expiresIn` that is not a whole number of
 * seconds from 1 to 604,800 (S3's longest).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { redirectOptions } from "./blob_routes.ts";
 * import { MemoryBackend } from "../memory/backend.ts";
 *
 * const memory = new MemoryBackend();
 * const signing = Object.assign(new MemoryBackend(), {
 *   signedUrl: () => Promise.resolve("https://storage.example.com/o?sig=1"),
 * });
 * assert(redirectOptions(true, memory) === undefined);
 * assert(redirectOptions(true, signing)?.expiresIn === 300);
 * assert(redirectOptions({ expiresIn: 60 }, signing)?.expiresIn === 60);
 * assert(redirectOptions(false, signing) === undefined);
 * ```
 */
export function redirectOptions(
  option: boolean | { expiresIn?: number } | undefined,
  backend: Backend,
): { expiresIn: number } | undefined {
  if (!option) return undefined;
  const expiresIn = option === true
    ? DEFAULT_REDIRECT_EXPIRES_IN
    : option.expiresIn ?? DEFAULT_REDIRECT_EXPIRES_IN;
  if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > 604_800) {
    throw new BadParamsError(
      `invalid redirect expiresIn (expected a whole number of seconds from 1 to 604800, got ${expiresIn})`,
    );
  }
  return typeof backend.signedUrl === "function" ? { expiresIn } : undefined;
}

/**
 * Answers `GET` or `HEAD /blobs/{hash}`: the blob streamed with its
 * validators, one `Range` honoured (206, or 416 when unsatisfiable).
 * Preconditions are evaluated in the order of RFC 9110 §13.2.2:
 * `If-Match` first (412 unless it names the strong `ETag` or is `*`),
 * then `If-None-Match` (304), then `Range`. An absent blob is a 404
 * whatever the preconditions.
 *
 * With `options.redirect`, a `GET` of a single blob that passed those
 * checks is a 307 to the backend's signed URL instead (see
 * {@linkcode redirectTo}); `HEAD`, 304, 412, multipart blobs and requests
 * with `If-Match` or `If-Range` are answered as without it.
 *
 * @example
 * ```ts ignore
 * const res = await getBlob(req, blobs, hash, options);
 * ```
 */
export async function getBlob(
  req: Request,
  blobs: MultipartBlobs,
  hash: string,
  options: BlobRouteOptions,
): Promise<Response> {
  checkHash(hash, "blob hash");
  const headers = blobHeaders(hash, options.cacheControl);
  const ifMatch = req.headers.get("if-match");
  if (ifMatch !== null && !matchesStrongly(ifMatch, hash)) {
    await blobs.stat(hash); // 404 if absent
    throw new HttpError(
      412,
      "precondition_failed",
      `If-Match ${
        JSON.stringify(ifMatch.slice(0, 200))
      } does not match (expected "*" or the ETag "${hash}")`,
    );
  }
  if (matchesWeakly(req.headers.get("if-none-match"), hash)) {
    await blobs.stat(hash); // 404 if absent
    return new Response(null, { status: 304, headers });
  }
  if (req.method === "HEAD") {
    headers.set("content-length", String((await blobs.stat(hash)).size));
    return new Response(null, { status: 200, headers });
  }
  if (options.redirect) {
    const res = await redirectTo(req, blobs, hash, options.redirect.expiresIn);
    if (res) return res;
  }
  const spec = requestedRange(req, hash);
  if (!spec) {
    const found = await blobs.open(hash);
    headers.set("content-length", String(found.size));
    return new Response(found.body, { status: 200, headers });
  }
  const { found, start, end } = await openRange(blobs, hash, spec, req);
  headers.set("content-length", String(end - start));
  headers.set("content-range", `bytes ${start}-${end - 1}/${found.size}`);
  return new Response(found.body, { status: 206, headers });
}

/**
 * Answers `PUT /blobs/{hash}`: streams the body into `store.put` with the
 * size from `Content-Length`. 201 when this put stored the blob, 200 when
 * it was already there (its put time refreshed and the content still
 * verified): of several concurrent puts of one new blob, exactly one gets
 * 201, as the store says. With `If-None-Match: *` (or the blob's own
 * `ETag`), a blob that exists is a 412 and the body is not read.
 *
 * @example
 * ```ts ignore
 * const res = await putBlob(req, blobs, hash, options);
 * ```
 */
export async function putBlob(
  req: Request,
  blobs: MultipartBlobs,
  hash: string,
  options: BlobRouteOptions,
): Promise<Response> {
  checkHash(hash, "blob hash");
  const size = declaredSize(req, options.maxBodySize);
  const createOnly = matchesWeakly(req.headers.get("if-none-match"), hash);
  if (createOnly && await exists(blobs, hash)) {
    await req.body?.cancel().catch(() => {});
    throw alreadyExists(hash);
  }
  const body = bodyStream(req, options.bodyIdleTimeout);
  const { created } = await blobs.store.put(body, hash, size);
  // Created meanwhile by a concurrent put: the precondition failed after all.
  if (createOnly && !created) throw alreadyExists(hash);
  return jsonResponse({ hash, size }, created ? 201 : 200, {
    location: options.blobPath(hash),
    etag: `"${hash}"`,
  });
}

/**
 * Answers `POST /blobs`: stores the body, whose hash the client need not
 * know, under the SHA-384 the store computes as it streams
 * (`MultipartBlobs.putUnknown`: one blob up to 8 MiB, else 8 MiB parts
 * hashed as they fill and finished from the running hash). 201 with
 * `Location: /blobs/{hash}` and `{"hash", "size"}`, 200 when the blob was
 * there. A `Repr-Digest` with a `sha-384` member (RFC 9530) is verified:
 * a mismatch is a 422 and nothing is recorded. `Content-Length` is
 * required (411) and bounded (413), as for `PUT`; a body that is not as
 * long as it says is a 400.
 *
 * @example
 * ```ts ignore
 * const res = await postBlob(req, blobs, options);
 * ```
 */
export async function postBlob(
  req: Request,
  blobs: MultipartBlobs,
  options: BlobRouteOptions,
): Promise<Response> {
  const size = declaredSize(req, options.maxBodySize);
  const expected = reprDigestSha384(req.headers.get("repr-digest"));
  const body = bodyStream(req, options.bodyIdleTimeout);
  let result: { hash: string; created: boolean };
  try {
    result = await blobs.putUnknown(body, size, { expected });
  } catch (err) {
    // No hash was declared, so a length that differs is a malformed
    // request rather than content that is not what it claims to be.
    if (!(err instanceof SizeMismatchError)) throw err;
    throw new HttpError(
      400,
      "size_mismatch",
      `request body is not as long as its Content-Length (expected ${err.expected} bytes, got ${
        err.actual > err.expected ? "at least " : ""
      }${err.actual})`,
    );
  }
  const { hash, created } = result;
  return jsonResponse({ hash, size }, created ? 201 : 200, {
    location: options.blobPath(hash),
    etag: `"${hash}"`,
  });
}

/**
 * Formats a hash as a `Repr-Digest` field value (RFC 9530).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { reprDigest } from "./blob_routes.ts";
 *
 * assert(reprDigest("00".repeat(48)) === `sha-384=:${"A".repeat(64)}:`);
 * ```
 */
export function reprDigest(hash: string): string {
  const bytes = hash.match(/../g)!.map((hex) => parseInt(hex, 16));
  return `sha-384=:${btoa(String.fromCharCode(...bytes))}:`;
}

function blobHeaders(hash: string, cacheControl: string): Headers {
  return new Headers({
    "content-type": "application/octet-stream",
    "etag": `"${hash}"`,
    "accept-ranges": "bytes",
    "cache-control": cacheControl,
    "repr-digest": reprDigest(hash),
  });
}

/**
 * The 307 to a signed URL of the single blob `hash`, or `undefined` to
 * answer as without `redirect`: a multipart blob or an absent one (which
 * the catalog alone tells, the single blob's object name coming from the
 * same lookup), a backend without `signedUrl`, or a request carrying
 * `If-Match` or `If-Range`. Those two stay here because the client would
 * send them again to the storage, whose own `ETag` (an MD5 or the like)
 * is not the blob's: `If-Match` would fail there and `If-Range` would
 * turn every range into the whole blob. A `Range` goes along as is.
 *
 * The redirect is `private` and cached for half the URL's lifetime, so a
 * cached 307 never points at an expired URL; it carries the blob's `ETag`.
 * The storage serves the bytes as they are stored, unchecked by the
 * service.
 */
async function redirectTo(
  req: Request,
  blobs: MultipartBlobs,
  hash: string,
  expiresIn: number,
): Promise<Response | undefined> {
  const { backend, catalog } = blobs.store;
  if (typeof backend.signedUrl !== "function") return undefined;
  if (req.headers.has("if-match") || req.headers.has("if-range")) {
    return undefined;
  }
  const ref = await catalog.getRef(hash);
  if (!ref) return undefined;
  const location = await backend.signedUrl(ref.name, { expiresIn });
  return new Response(null, {
    status: 307,
    headers: {
      location,
      etag: `"${hash}"`,
      "cache-control": `private, max-age=${Math.floor(expiresIn / 2)}`,
    },
  });
}

/** The range to honour: none when absent, malformed, or `If-Range` fails. */
function requestedRange(req: Request, hash: string): RangeSpec | undefined {
  const spec = parseRangeHeader(req.headers.get("range"));
  if (!spec) return undefined;
  const ifRange = req.headers.get("if-range");
  // Only a strong validator can guard a range; we send no Last-Modified,
  // so a date cannot match either.
  if (ifRange !== null && ifRange.trim() !== `"${hash}"`) return undefined;
  return spec;
}

/**
 * Opens the bytes of a range. A `first-last` range is read in one open (the
 * store clamps it, and the size that comes back says whether it was
 * satisfiable); a suffix range needs the size first, which the catalog
 * tells (`stat`) without touching the backend.
 */
async function openRange(
  blobs: MultipartBlobs,
  hash: string,
  spec: RangeSpec,
  req: Request,
): Promise<{ found: FoundBlob; start: number; end: number }> {
  if (spec.suffix !== undefined) {
    const { size } = await blobs.stat(hash);
    const range = satisfiable(resolveRangeSpec(spec, size), size, req);
    return { found: await blobs.open(hash, range), ...range };
  }
  const found = await blobs.open(hash, {
    start: spec.first,
    end: spec.last === undefined
      ? undefined
      : Math.min(spec.last + 1, Number.MAX_SAFE_INTEGER),
  });
  const range = resolveRangeSpec(spec, found.size);
  if (!range) release(found);
  return { found, ...satisfiable(range, found.size, req) };
}

/** `range`, or the 416 for a range that resolved to nothing. */
function satisfiable(
  range: { start: number; end: number } | undefined,
  size: number,
  req: Request,
): { start: number; end: number } {
  if (range) return range;
  throw new HttpError(
    416,
    "range_not_satisfiable",
    `range ${
      JSON.stringify(req.headers.get("range"))
    } not satisfiable (blob is ${size} bytes)`,
    { "content-range": `bytes */${size}` },
  );
}

/**
 * The entity tags of an `If-Match` or `If-None-Match` field value, or `"*"`.
 * A malformed member is skipped (it matches nothing).
 */
function entityTags(header: string): "*" | { weak: boolean; tag: string }[] {
  if (header.trim() === "*") return "*";
  return [...header.matchAll(/(W\/)?("[^"]*")/g)].map((m) => ({
    weak: m[1] !== undefined,
    tag: m[2],
  }));
}

/** Whether an `If-None-Match` list names the blob (weak comparison, RFC 9110 §8.8.3.2). */
function matchesWeakly(header: string | null, hash: string): boolean {
  if (header === null) return false;
  const tags = entityTags(header);
  return tags === "*" || tags.some(({ tag }) => tag === `"${hash}"`);
}

/**
 * Whether an `If-Match` list names the blob (strong comparison: a weak
 * tag never matches). `*` matches any blob that exists, which the caller
 * finds out when it opens it.
 */
function matchesStrongly(header: string, hash: string): boolean {
  const tags = entityTags(header);
  return tags === "*" ||
    tags.some(({ weak, tag }) => !weak && tag === `"${hash}"`);
}

function alreadyExists(hash: string): HttpError {
  return new HttpError(
    412,
    "precondition_failed",
    `blob ${hash} already exists (expected none with If-None-Match)`,
  );
}

async function exists(blobs: MultipartBlobs, hash: string): Promise<boolean> {
  try {
    await blobs.stat(hash);
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** Lets go of a body that will not be read. */
function release(found: FoundBlob): void {
  found.body.cancel().catch(() => {});
}
