/**
 * AWS Signature Version 4 for S3, by hand: the `Authorization` header of a
 * request ({@linkcode signRequest}) and presigned URLs
 * ({@linkcode presignUrl}).
 *
 * Signing needs only the method, the URL and the headers, never a `Request`
 * or a body, so the same headers serve `fetch` and `node:http` alike; the
 * body enters as its SHA-256 ({@linkcode sha256Hex}) or as
 * {@linkcode UNSIGNED_PAYLOAD}. HMAC-SHA256 and SHA-256 come from Web Crypto
 * (`crypto.subtle`), so the module runs wherever that does.
 *
 * The canonical request follows the S3 flavour of the specification: each
 * path segment percent-encoded once (what the URL already encodes is decoded
 * first, never encoded twice; `/` kept), query parameters encoded per
 * RFC 3986 and sorted by name then value, header values trimmed with inner
 * runs of whitespace collapsed, signed header names lowercase and sorted.
 *
 * Errors name what was wrong, never the secret key or a signature.
 *
 * @module
 */

/**
 * The keys a request is signed with. `sessionToken` comes with temporary
 * credentials (STS, instance roles) and is sent as `x-amz-security-token`.
 *
 * @example
 * ```ts
 * import type { S3Credentials } from "@blobstore/blobstore/s3";
 *
 * const credentials: S3Credentials = {
 *   accessKeyId: "AKIAIOSFODNN7EXAMPLE",
 *   secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
 * };
 * ```
 */
export interface S3Credentials {
  /** The access key id, sent in the clear as part of the credential scope. */
  accessKeyId: string;
  /** The secret key; it only ever enters an HMAC. */
  secretAccessKey: string;
  /** The session token of temporary credentials, if any. */
  sessionToken?: string;
}

/**
 * The payload hash that leaves the body out of the signature. Presigned URLs
 * always use it; a request body sent this way is protected by TLS only.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { UNSIGNED_PAYLOAD } from "@blobstore/blobstore/s3";
 *
 * assert.strictEqual(UNSIGNED_PAYLOAD, "UNSIGNED-PAYLOAD");
 * ```
 */
export const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";

/**
 * The SHA-256 of an empty body, the payload hash of a GET, HEAD or DELETE.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { EMPTY_SHA256, sha256Hex } from "./sigv4.ts";
 *
 * assert.strictEqual(await sha256Hex(""), EMPTY_SHA256);
 * ```
 */
export const EMPTY_SHA256 =
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/**
 * What {@linkcode signRequest} signs.
 *
 * @example
 * ```ts
 * import type { SignRequestOptions } from "@blobstore/blobstore/s3";
 *
 * // The SHA-256 of an empty body, the payload hash of a GET, HEAD or DELETE.
 * const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * const options: SignRequestOptions = {
 *   method: "GET",
 *   url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
 *   headers: { range: "bytes=0-9" },
 *   credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
 *   region: "us-east-1",
 *   payloadHash: EMPTY_SHA256,
 * };
 * ```
 */
export interface SignRequestOptions {
  /** The HTTP method; it is upper-cased. */
  method: string;
  /** The URL the request goes to, exactly as it will be sent. */
  url: URL;
  /**
   * The headers that will be sent, all of them signed except the
   * hop-by-hop ones (`connection`, `expect`, `transfer-encoding`, …) and
   * `user-agent`, which intermediaries may change. Not modified.
   */
  headers?: Headers | Record<string, string>;
  /** The keys to sign with. */
  credentials: S3Credentials;
  /** The region of the bucket, e.g. `us-east-1`. */
  region: string;
  /** The service of the credential scope; `s3` unless told. */
  service?: string;
  /**
   * The lowercase hex SHA-256 of the body ({@linkcode sha256Hex}), or
   * {@linkcode UNSIGNED_PAYLOAD} (the default) to leave the body unsigned.
   */
  payloadHash?: string;
  /** The signing time; now unless told. */
  now?: Date;
}

/**
 * Signs a request with AWS Signature Version 4 and returns the headers to
 * send: a copy of the given ones plus `x-amz-date`, `x-amz-content-sha256`,
 * `x-amz-security-token` (when the credentials have a session token) and
 * `authorization`. The `host` header is signed (the URL's host, with its
 * port unless it is the scheme's default, or the `host` header given) but
 * not added, since `fetch` and `node:http` set it themselves.
 *
 * In the query, `+` stands for a space, as `URLSearchParams` writes it; a
 * literal plus is `%2B`.
 *
 * @example Reproducing the GET Object example of the S3 documentation
 * ```ts
 * import assert from "node:assert";
 * import { signRequest } from "@blobstore/blobstore/s3";
 *
 * // The SHA-256 of an empty body, the payload hash of a GET, HEAD or DELETE.
 * const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
 * const headers = await signRequest({
 *   method: "GET",
 *   url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
 *   headers: { Range: "bytes=0-9" },
 *   credentials: {
 *     accessKeyId: "AKIAIOSFODNN7EXAMPLE",
 *     secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
 *   },
 *   region: "us-east-1",
 *   payloadHash: EMPTY_SHA256,
 *   now: new Date("2013-05-24T00:00:00Z"),
 * });
 * assert.strictEqual(headers.get("x-amz-date"), "20130524T000000Z");
 * assert.strictEqual(
 *   headers.get("authorization"),
 *   "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request," +
 *     "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date," +
 *     "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
 * );
 * ```
 */
export async function signRequest(
  options: SignRequestOptions,
): Promise<Headers> {
  const {
    credentials,
    region,
    service = "s3",
    payloadHash = UNSIGNED_PAYLOAD,
  } = options;
  const method = checkMethod(options.method);
  const url = checkUrl(options.url);
  checkScope(credentials, region, service);
  if (payloadHash !== UNSIGNED_PAYLOAD && !/^[0-9a-f]{64}$/.test(payloadHash)) {
    throw new TypeError(
      `invalid payloadHash (expected 64 lowercase hex characters or "${UNSIGNED_PAYLOAD}", got ${
        quote(payloadHash)
      })`,
    );
  }
  const { amzDate, day } = timestamps(options.now);

  const out = new Headers(options.headers);
  out.delete("authorization");
  out.set("x-amz-date", amzDate);
  out.set("x-amz-content-sha256", payloadHash);
  if (credentials.sessionToken) {
    out.set("x-amz-security-token", credentials.sessionToken);
  }

  const signed = new Map<string, string>();
  for (const [name, value] of out) {
    if (!UNSIGNED_HEADERS.has(name)) signed.set(name, value);
  }
  if (!signed.has("host")) signed.set("host", url.host);
  const { canonical, names } = canonicalHeaders(signed);

  const scope = `${day}/${region}/${service}/aws4_request`;
  const request = [
    method,
    canonicalPath(url.pathname),
    canonicalQuery(parseQuery(url.search)),
    canonical,
    names,
    payloadHash,
  ].join("\n");
  const signature = await sign(
    credentials.secretAccessKey,
    day,
    region,
    service,
    amzDate,
    scope,
    request,
  );
  out.set(
    "authorization",
    `${ALGORITHM} Credential=${credentials.accessKeyId}/${scope},SignedHeaders=${names},Signature=${signature}`,
  );
  return out;
}

/**
 * What {@linkcode presignUrl} signs.
 *
 * @example
 * ```ts
 * import type { PresignUrlOptions } from "@blobstore/blobstore/s3";
 *
 * const options: PresignUrlOptions = {
 *   url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
 *   credentials: { accessKeyId: "AKID", secretAccessKey: "secret" },
 *   region: "us-east-1",
 *   expiresIn: 3600,
 *   signedHeaders: { range: "bytes=0-9" },
 * };
 * ```
 */
export interface PresignUrlOptions {
  /** The HTTP method the URL is for; `GET` unless told. */
  method?: string;
  /** The URL to presign; it must not carry `X-Amz-*` signing parameters yet. */
  url: URL;
  /** The keys to sign with. */
  credentials: S3Credentials;
  /** The region of the bucket, e.g. `us-east-1`. */
  region: string;
  /** The service of the credential scope; `s3` unless told. */
  service?: string;
  /** How long the URL stays valid, in whole seconds from 1 to 604800 (7 days). */
  expiresIn: number;
  /** The signing time, from which `expiresIn` counts; now unless told. */
  now?: Date;
  /**
   * Headers besides `host` that the signature covers, which whoever uses
   * the URL must then send with exactly these values (e.g. a `range`).
   */
  signedHeaders?: Record<string, string>;
}

/**
 * Presigns a URL with AWS Signature Version 4 in query-string form: returns
 * a new URL carrying `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
 * `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Security-Token` (when the
 * credentials have a session token) and `X-Amz-Signature`, its query sorted
 * and encoded the way it was signed. The payload is always unsigned.
 *
 * Throws a `RangeError` unless `expiresIn` is a whole number of seconds
 * from 1 to 604800.
 *
 * @example Reproducing the presigned URL example of the S3 documentation
 * ```ts
 * import assert from "node:assert";
 * import { presignUrl } from "@blobstore/blobstore/s3";
 *
 * const url = await presignUrl({
 *   url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
 *   credentials: {
 *     accessKeyId: "AKIAIOSFODNN7EXAMPLE",
 *     secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
 *   },
 *   region: "us-east-1",
 *   expiresIn: 86400,
 *   now: new Date("2013-05-24T00:00:00Z"),
 * });
 * assert.strictEqual(
 *   url.searchParams.get("X-Amz-Signature"),
 *   "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
 * );
 * ```
 */
export async function presignUrl(options: PresignUrlOptions): Promise<URL> {
  const { credentials, region, service = "s3", expiresIn } = options;
  const method = checkMethod(options.method ?? "GET");
  const url = checkUrl(options.url);
  checkScope(credentials, region, service);
  if (
    !Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_EXPIRES
  ) {
    throw new RangeError(
      `invalid expiresIn (expected a whole number of seconds from 1 to ${MAX_EXPIRES}, got ${
        String(expiresIn)
      })`,
    );
  }
  const { amzDate, day } = timestamps(options.now);

  const signed = new Map<string, string>();
  for (const [name, value] of new Headers(options.signedHeaders)) {
    signed.set(name, value);
  }
  if (!signed.has("host")) signed.set("host", url.host);
  const { canonical, names } = canonicalHeaders(signed);

  const query = parseQuery(url.search);
  for (const [name] of query) {
    if (AUTH_PARAMS.has(name.toLowerCase())) {
      throw new TypeError(`url already carries the signing parameter ${name}`);
    }
  }
  const scope = `${day}/${region}/${service}/aws4_request`;
  const auth: [string, string][] = [
    ["X-Amz-Algorithm", ALGORITHM],
    ["X-Amz-Credential", `${credentials.accessKeyId}/${scope}`],
    ["X-Amz-Date", amzDate],
    ["X-Amz-Expires", String(expiresIn)],
    ["X-Amz-SignedHeaders", names],
  ];
  if (credentials.sessionToken) {
    auth.push(["X-Amz-Security-Token", credentials.sessionToken]);
  }
  for (const [name, value] of auth) query.push([encode(name), encode(value)]);

  const search = canonicalQuery(query);
  const request = [
    method,
    canonicalPath(url.pathname),
    search,
    canonical,
    names,
    UNSIGNED_PAYLOAD,
  ].join("\n");
  const signature = await sign(
    credentials.secretAccessKey,
    day,
    region,
    service,
    amzDate,
    scope,
    request,
  );
  const result = new URL(url);
  result.search = `${search}&X-Amz-Signature=${signature}`;
  return result;
}

/**
 * The lowercase hex SHA-256 of some bytes, or of a string's UTF-8 bytes: the
 * `payloadHash` of a signed body.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { sha256Hex } from "@blobstore/blobstore/s3";
 *
 * assert.strictEqual(
 *   await sha256Hex("Welcome to Amazon S3."),
 *   "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
 * );
 * ```
 */
export async function sha256Hex(
  data: Uint8Array | ArrayBuffer | string,
): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", toBuffer(data)));
}

const ALGORITHM = "AWS4-HMAC-SHA256";
const MAX_EXPIRES = 604800;
const AUTH_PARAMS = new Set([
  "x-amz-algorithm",
  "x-amz-credential",
  "x-amz-date",
  "x-amz-expires",
  "x-amz-signedheaders",
  "x-amz-security-token",
  "x-amz-signature",
]);
/** Headers that intermediaries may add, drop or rewrite, so never signed. */
const UNSIGNED_HEADERS = new Set([
  "authorization",
  "connection",
  "expect",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "user-agent",
  "x-amzn-trace-id",
]);

const encoder = new TextEncoder();

function checkMethod(method: string): string {
  if (typeof method !== "string" || !/^[A-Za-z]+$/.test(method)) {
    throw new TypeError(`invalid method ${quote(String(method))}`);
  }
  return method.toUpperCase();
}

function checkUrl(url: URL): URL {
  if (!(url instanceof URL)) throw new TypeError("url must be a URL");
  if ((url.protocol !== "http:" && url.protocol !== "https:") || !url.host) {
    throw new TypeError(
      `url must be http: or https: with a host (got ${quote(url.protocol)})`,
    );
  }
  return url;
}

function checkScope(
  credentials: S3Credentials,
  region: string,
  service: string,
): void {
  if (
    !credentials || typeof credentials.accessKeyId !== "string" ||
    !credentials.accessKeyId
  ) {
    throw new TypeError("credentials.accessKeyId is missing");
  }
  if (
    typeof credentials.secretAccessKey !== "string" ||
    !credentials.secretAccessKey
  ) {
    throw new TypeError("credentials.secretAccessKey is missing");
  }
  for (const [what, value] of [["region", region], ["service", service]]) {
    if (typeof value !== "string" || !/^[A-Za-z0-9-]+$/.test(value)) {
      throw new TypeError(`invalid ${what} ${quote(String(value))}`);
    }
  }
}

function timestamps(now = new Date()): { amzDate: string; day: string } {
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) {
    throw new RangeError("invalid signing time (now)");
  }
  const amzDate = now.toISOString().replace(/\.\d{3}Z$/, "Z").replace(
    /[-:]/g,
    "",
  );
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) {
    throw new RangeError(`signing time out of range (${now.toISOString()})`);
  }
  return { amzDate, day: amzDate.slice(0, 8) };
}

function quote(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}

/** `name:value` lines (values trimmed, inner whitespace runs collapsed) and the sorted names. */
function canonicalHeaders(
  headers: Map<string, string>,
): { canonical: string; names: string } {
  const names = [...headers.keys()].sort();
  const canonical = names
    .map((name) =>
      `${name}:${headers.get(name)!.trim().replace(/\s+/g, " ")}\n`
    )
    .join("");
  return { canonical, names: names.join(";") };
}

/** Each segment of an already encoded path decoded, then encoded once per RFC 3986. */
function canonicalPath(pathname: string): string {
  const path = pathname.split("/").map((segment) => reencode(segment, false))
    .join("/");
  return path.startsWith("/") ? path : `/${path}`;
}

/** The raw query's parameters as encoded `[name, value]` pairs, a missing `=` giving an empty value. */
function parseQuery(search: string): [string, string][] {
  const pairs: [string, string][] = [];
  for (const part of search.replace(/^\?/, "").split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const name = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? "" : part.slice(eq + 1);
    pairs.push([reencode(name, true), reencode(value, true)]);
  }
  return pairs;
}

/** Encoded pairs sorted by name, then value, joined as `name=value&…`. */
function canonicalQuery(pairs: [string, string][]): string {
  return pairs
    .sort(([an, av], [bn, bv]) =>
      an < bn ? -1 : an > bn ? 1 : av < bv ? -1 : av > bv ? 1 : 0
    )
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

/**
 * Re-encodes a piece of a URL: `%XX` escapes become the bytes they stand
 * for (and `+` a space, in a query), which are then encoded with only
 * `A-Z a-z 0-9 - . _ ~` left as they are, escapes in upper case. A `%` that
 * starts no escape is a literal percent sign.
 */
function reencode(raw: string, plusIsSpace: boolean): string {
  let out = "";
  for (let i = 0; i < raw.length;) {
    const c = raw[i];
    if (c === "%" && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      out += encodeByte(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 3;
    } else if (c === "+" && plusIsSpace) {
      out += "%20";
      i += 1;
    } else {
      const char = String.fromCodePoint(raw.codePointAt(i)!);
      for (const byte of encoder.encode(char)) out += encodeByte(byte);
      i += char.length;
    }
  }
  return out;
}

/** A plain (not yet encoded) string encoded per RFC 3986. */
function encode(text: string): string {
  let out = "";
  for (const byte of encoder.encode(text)) out += encodeByte(byte);
  return out;
}

function encodeByte(byte: number): string {
  const unreserved = (byte >= 0x30 && byte <= 0x39) ||
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) || byte === 0x2d || byte === 0x2e ||
    byte === 0x5f ||
    byte === 0x7e;
  return unreserved
    ? String.fromCharCode(byte)
    : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
}

/** The hex signature of a canonical request. */
async function sign(
  secret: string,
  day: string,
  region: string,
  service: string,
  amzDate: string,
  scope: string,
  canonicalRequest: string,
): Promise<string> {
  const stringToSign = [
    ALGORITHM,
    amzDate,
    scope,
    await sha256Hex(canonicalRequest),
  ].join("\n");
  const key = await signingKey(secret, day, region, service);
  return hex(
    await crypto.subtle.sign("HMAC", key, encoder.encode(stringToSign)),
  );
}

/** Derived signing keys, a few kept: one per (secret, day, region, service). */
const keyCache = new Map<string, Promise<CryptoKey>>();
const KEY_CACHE_SIZE = 16;

/**
 * The signing key: `AWS4` + secret, then HMAC'd in turn with the day, the
 * region, the service and `aws4_request`.
 */
function signingKey(
  secret: string,
  day: string,
  region: string,
  service: string,
): Promise<CryptoKey> {
  const id = [secret, day, region, service].join("\n");
  let key = keyCache.get(id);
  if (!key) {
    key = (async () => {
      let bytes: BufferSource = encoder.encode(`AWS4${secret}`);
      for (const part of [day, region, service, "aws4_request"]) {
        bytes = await hmac(bytes, part);
      }
      return await importHmacKey(bytes);
    })();
    key.catch(() => keyCache.delete(id));
    if (keyCache.size >= KEY_CACHE_SIZE) {
      keyCache.delete(keyCache.keys().next().value!);
    }
    keyCache.set(id, key);
  }
  return key;
}

async function hmac(key: BufferSource, data: string): Promise<ArrayBuffer> {
  return await crypto.subtle.sign(
    "HMAC",
    await importHmacKey(key),
    encoder.encode(data),
  );
}

function importHmacKey(bytes: BufferSource): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    bytes,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

function toBuffer(
  data: Uint8Array | ArrayBuffer | string,
): Uint8Array<ArrayBuffer> | ArrayBuffer {
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof ArrayBuffer) return data;
  // A view over a shared buffer cannot go to Web Crypto as it is.
  return data.buffer instanceof ArrayBuffer
    ? data as Uint8Array<ArrayBuffer>
    : data.slice();
}

function hex(buffer: ArrayBuffer): string {
  return Array.from(
    new Uint8Array(buffer),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}
