/**
 * Cross-origin resource sharing (CORS) for the HTTP service: which web
 * pages, by origin, may call it from a browser, and the headers that tell
 * the browser so. Off unless configured (`createHandler`'s `cors` option,
 * or `BLOBSTORE_CORS_ORIGINS`).
 *
 * A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
 * from an allowed origin is answered 204 before routing and without
 * `authorize` (browsers never send credentials on a preflight); from any
 * other origin it is a 403 `origin_not_allowed` without CORS headers, which
 * the browser refuses. Every other response to an allowed origin, errors,
 * 206 and 304 included, carries `Access-Control-Allow-Origin` and
 * `Access-Control-Expose-Headers`; a response to any other origin carries
 * none, so the browser withholds it from the page. With CORS on, every
 * response says `Vary: Origin`, so that a shared cache never hands one
 * origin's answer to another.
 *
 * @module
 */

import { jsonResponse } from "./errors.ts";
import { readEnv, UNREADABLE } from "../env.ts";

/**
 * Which origins may call the service from a browser.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { CorsOptions } from "@blobstore/blobstore/http";
 *
 * const cors: CorsOptions = { origins: ["https://app.example"], maxAge: 3600 };
 * assert(cors.origins !== "*" && cors.origins.length === 1);
 * ```
 */
export interface CorsOptions {
  /**
   * The allowed origins, each an exact `scheme://host[:port]` as browsers
   * send it in `Origin` (`https://app.example`, `http://127.0.0.1:5173`),
   * or `"*"` for every origin.
   */
  origins: readonly string[] | "*";
  /**
   * Whether pages may send credentials (cookies, TLS client certificates)
   * with `credentials: "include"`: `Access-Control-Allow-Credentials:
   * true`, and the origin echoed even with `"*"` (default `false`). A
   * bearer token in `Authorization` needs no credentials.
   */
  credentials?: boolean;
  /** How long browsers may cache a preflight, in seconds (default 600). */
  maxAge?: number;
}

/**
 * {@linkcode CorsOptions} checked and normalized by
 * {@linkcode corsPolicy}: what the other functions here take.
 */
export interface CorsPolicy {
  /** The allowed origins, normalized, or `"*"`. */
  readonly origins: ReadonlySet<string> | "*";
  /** Whether credentials are allowed. */
  readonly credentials: boolean;
  /** The `Access-Control-Max-Age` of preflights, in seconds. */
  readonly maxAge: number;
}

/** The methods a preflight allows: every method the service answers (`PATCH`: tus). */
export const CORS_ALLOW_METHODS: readonly string[] = [
  "GET",
  "HEAD",
  "PUT",
  "POST",
  "DELETE",
  "PATCH",
];

/**
 * The request headers a preflight allows, by name: `*` would not cover
 * `Authorization` (Firefox holds to the standard there, Chromium does not).
 * `Repr-Digest` is for `POST /blobs`; the rest are the ones tus clients
 * send (`tus-js-client` among them), including those of extensions the
 * service refuses, so that the refusal reaches the page.
 */
export const CORS_ALLOW_HEADERS: readonly string[] = [
  "Authorization",
  "Content-Type",
  "Range",
  "If-None-Match",
  "If-Match",
  "If-Range",
  "Repr-Digest",
  "Tus-Resumable",
  "Upload-Length",
  "Upload-Offset",
  "Upload-Metadata",
  "Upload-Checksum",
  "Upload-Defer-Length",
  "Upload-Concat",
  "X-HTTP-Method-Override",
  "X-Requested-With",
];

/**
 * The response headers a page may read besides the CORS-safelisted ones:
 * the blob routes' and the tus ones (`Upload-Offset` and the rest;
 * `Content-Location` names the blob a finished tus upload made).
 */
export const CORS_EXPOSE_HEADERS: readonly string[] = [
  "ETag",
  "Content-Range",
  "Content-Length",
  "Repr-Digest",
  "Location",
  "Accept-Ranges",
  "Retry-After",
  "Content-Location",
  "Tus-Resumable",
  "Tus-Version",
  "Tus-Extension",
  "Tus-Max-Size",
  "Tus-Checksum-Algorithm",
  "Upload-Offset",
  "Upload-Length",
  "Upload-Metadata",
  "Upload-Expires",
];

/** The default `Access-Control-Max-Age`, in seconds. */
export const DEFAULT_CORS_MAX_AGE = 600;

/** The environment variable with the allowed origins, comma-separated. */
export const CORS_ORIGINS_VARIABLE = "BLOBSTORE_CORS_ORIGINS";

/**
 * An origin as browsers send it: `scheme://host[:port]`, lowercase, no
 * default port. Throws a `TypeError` for anything else (a path, a query,
 * credentials, an opaque origin such as `null` or `file:`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { normalizeOrigin } from "./cors.ts";
 *
 * assert.strictEqual(normalizeOrigin("HTTPS://App.Example:443/"), "https://app.example");
 * assert.strictEqual(normalizeOrigin("http://127.0.0.1:5173"), "http://127.0.0.1:5173");
 * assert.throws(() => normalizeOrigin("app.example"), TypeError);
 * assert.throws(() => normalizeOrigin("https://app.example/path"), TypeError);
 * ```
 */
export function normalizeOrigin(origin: string): string {
  const expected = "expected scheme://host[:port], like https://app.example";
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new TypeError(
      `invalid origin ${JSON.stringify(origin)} (${expected})`,
    );
  }
  if (
    url.origin === "null" || url.pathname !== "/" || url.search !== "" ||
    url.hash !== "" || url.username !== "" || url.password !== "" ||
    origin.endsWith("?") || origin.endsWith("#")
  ) {
    throw new TypeError(
      `invalid origin ${JSON.stringify(origin)} (${expected})`,
    );
  }
  return url.origin;
}

/**
 * The origins of a comma-separated list, as `BLOBSTORE_CORS_ORIGINS` and
 * `--cors-origin` take them: trimmed, empty members dropped, each
 * normalized; `*` alone means every origin. Throws a `TypeError` for an
 * invalid origin, or `*` beside others.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseOrigins } from "./cors.ts";
 *
 * assert.deepStrictEqual(
 *   parseOrigins("https://a.example, https://b.example:8443"),
 *   ["https://a.example", "https://b.example:8443"],
 * );
 * assert.strictEqual(parseOrigins(" * "), "*");
 * assert.deepStrictEqual(parseOrigins(""), []);
 * ```
 */
export function parseOrigins(text: string): string[] | "*" {
  return checkedOrigins(
    text.split(",").map((origin) => origin.trim()).filter((o) => o !== ""),
  );
}

/**
 * Checks and normalizes {@linkcode CorsOptions}; throws a `TypeError` for
 * an invalid origin, `*` listed beside others, or a `maxAge` that is not
 * a whole number of seconds.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { corsPolicy } from "./cors.ts";
 *
 * const policy = corsPolicy({ origins: ["https://App.example"] });
 * assert(policy.origins !== "*" && policy.origins.has("https://app.example"));
 * assert(policy.maxAge === 600 && policy.credentials === false);
 * assert.throws(() => corsPolicy({ origins: "*", maxAge: -1 }), TypeError);
 * ```
 */
export function corsPolicy(options: CorsOptions): CorsPolicy {
  const maxAge = options.maxAge ?? DEFAULT_CORS_MAX_AGE;
  if (!Number.isSafeInteger(maxAge) || maxAge < 0) {
    throw new TypeError(
      `invalid cors maxAge ${maxAge} (expected whole seconds, 0 or more)`,
    );
  }
  const origins = options.origins === "*"
    ? "*"
    : checkedOrigins(options.origins);
  return {
    origins: origins === "*" ? "*" : new Set(origins),
    credentials: options.credentials ?? false,
    maxAge,
  };
}

/**
 * The CORS settings of the environment: `BLOBSTORE_CORS_ORIGINS`
 * (comma-separated origins, or `*`) as {@linkcode CorsOptions}, or
 * `undefined` when it is unset or empty. It fails closed: when the
 * variable cannot be read (no permission to read the environment), CORS
 * stays off, and it never prompts for the permission. An invalid value
 * throws a `TypeError` rather than being half applied.
 *
 * Runs on Deno (`Deno.env`, asking `Deno.permissions` first) and on
 * runtimes without the `Deno` global (`process.env`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { corsFromEnv } from "./cors.ts";
 *
 * const cors = corsFromEnv();
 * assert(cors === undefined || cors.origins === "*" || Array.isArray(cors.origins));
 * ```
 */
export function corsFromEnv(): CorsOptions | undefined {
  // Unreadable (no permission) means off: CORS only ever opens access.
  const value = readEnv(CORS_ORIGINS_VARIABLE);
  const text = value === UNREADABLE ? undefined : value;
  if (text === undefined || text.trim() === "") return undefined;
  try {
    return { origins: parseOrigins(text) };
  } catch (err) {
    throw new TypeError(
      `${CORS_ORIGINS_VARIABLE}: ${(err as Error).message}`,
    );
  }
}

/**
 * The policy `createHandler` applies for its `cors` option: none for
 * `false`, the environment's ({@linkcode corsFromEnv}) when not given.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { resolveCors } from "./cors.ts";
 *
 * assert(resolveCors(false) === undefined);
 * assert(resolveCors({ origins: "*" })?.origins === "*");
 * ```
 */
export function resolveCors(
  option: CorsOptions | false | undefined,
): CorsPolicy | undefined {
  const options = option === false ? undefined : option ?? corsFromEnv();
  return options && corsPolicy(options);
}

/**
 * Whether `req` is a CORS preflight: `OPTIONS` with `Origin` and
 * `Access-Control-Request-Method`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isPreflight } from "./cors.ts";
 *
 * assert(isPreflight(new Request("http://x/", {
 *   method: "OPTIONS",
 *   headers: { origin: "https://a.example", "access-control-request-method": "PUT" },
 * })));
 * assert(!isPreflight(new Request("http://x/", { method: "OPTIONS" })));
 * ```
 */
export function isPreflight(req: Request): boolean {
  return req.method === "OPTIONS" && req.headers.has("origin") &&
    req.headers.has("access-control-request-method");
}

/**
 * The `Access-Control-Allow-Origin` for a request from `origin`: the
 * origin itself when it is allowed (or `*` without credentials), else
 * `undefined` (no CORS headers at all).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { allowedOrigin, corsPolicy } from "./cors.ts";
 *
 * const policy = corsPolicy({ origins: ["https://a.example"] });
 * assert(allowedOrigin(policy, "https://a.example") === "https://a.example");
 * assert(allowedOrigin(policy, "https://b.example") === undefined);
 * assert(allowedOrigin(corsPolicy({ origins: "*" }), "https://b.example") === "*");
 * ```
 */
export function allowedOrigin(
  policy: CorsPolicy,
  origin: string | null,
): string | undefined {
  if (origin === null) return undefined;
  if (policy.origins === "*") return policy.credentials ? origin : "*";
  return policy.origins.has(origin) ? origin : undefined;
}

/**
 * The answer to a preflight from `origin`: 204 with the allowed origin,
 * methods, headers and max age when the origin is allowed; else 403
 * `origin_not_allowed` without CORS headers.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { corsPolicy, preflightResponse } from "./cors.ts";
 *
 * const policy = corsPolicy({ origins: ["https://a.example"] });
 * const ok = preflightResponse(policy, "https://a.example");
 * assert(ok.status === 204);
 * assert(ok.headers.get("access-control-allow-headers")?.includes("Authorization"));
 * assert(preflightResponse(policy, "https://b.example").status === 403);
 * ```
 */
export function preflightResponse(
  policy: CorsPolicy,
  origin: string | null,
): Response {
  const allow = allowedOrigin(policy, origin);
  if (allow === undefined) {
    return jsonResponse(
      {
        error: "origin_not_allowed",
        message: `origin ${
          JSON.stringify(origin?.slice(0, 200) ?? null)
        } may not call this service from a browser (CORS)`,
      },
      403,
      { vary: "Origin" },
    );
  }
  const headers = new Headers({
    "access-control-allow-origin": allow,
    "access-control-allow-methods": CORS_ALLOW_METHODS.join(", "),
    "access-control-allow-headers": CORS_ALLOW_HEADERS.join(", "),
    "access-control-max-age": String(policy.maxAge),
    "vary": "Origin",
  });
  if (policy.credentials) {
    headers.set("access-control-allow-credentials", "true");
  }
  return new Response(null, { status: 204, headers });
}

/**
 * `res` with the CORS headers of an actual (not preflight) response to a
 * request from `origin`: `Vary: Origin` always, and for an allowed origin
 * `Access-Control-Allow-Origin`, `Access-Control-Expose-Headers` and,
 * with credentials, `Access-Control-Allow-Credentials`. The headers are
 * set in place, or on a copy of a response whose headers are immutable;
 * the body is passed on unread.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { corsPolicy, withCorsHeaders } from "./cors.ts";
 *
 * const policy = corsPolicy({ origins: ["https://a.example"] });
 * const res = withCorsHeaders(policy, "https://a.example", new Response("x", { status: 404 }));
 * assert(res.headers.get("access-control-allow-origin") === "https://a.example");
 * assert(res.headers.get("access-control-expose-headers")?.includes("ETag"));
 * const other = withCorsHeaders(policy, "https://b.example", new Response("x"));
 * assert(other.headers.get("access-control-allow-origin") === null);
 * assert(other.headers.get("vary") === "Origin");
 * ```
 */
export function withCorsHeaders(
  policy: CorsPolicy,
  origin: string | null,
  res: Response,
): Response {
  const allow = allowedOrigin(policy, origin);
  const set = (headers: Headers) => {
    const vary = headers.get("vary");
    if (vary === null) headers.set("vary", "Origin");
    else if (!/(^|,)\s*(origin|\*)\s*(,|$)/i.test(vary)) {
      headers.append("vary", "Origin");
    }
    if (allow === undefined) return;
    headers.set("access-control-allow-origin", allow);
    headers.set(
      "access-control-expose-headers",
      CORS_EXPOSE_HEADERS.join(", "),
    );
    if (policy.credentials) {
      headers.set("access-control-allow-credentials", "true");
    }
  };
  try {
    set(res.headers);
    return res;
  } catch (err) {
    if (!(err instanceof TypeError)) throw err;
    // Immutable headers (`Response.redirect`, a fetched response): a copy.
    const copy = new Response(res.body, {
      status: res.status,
      statusText: res.statusText,
      headers: res.headers,
    });
    set(copy.headers);
    return copy;
  }
}

/**
 * `handler` with CORS applied by `policy`: preflights answered by
 * {@linkcode preflightResponse} before `handler` sees them, every other
 * response passed through {@linkcode withCorsHeaders}. Without a policy,
 * `handler` itself.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { corsPolicy, withCors } from "./cors.ts";
 *
 * const handler = withCors(
 *   corsPolicy({ origins: ["https://a.example"] }),
 *   (_req: Request) => Promise.resolve(new Response("hi")),
 * );
 * const res = await handler(new Request("http://x/", {
 *   headers: { origin: "https://a.example" },
 * }));
 * assert(res.headers.get("access-control-allow-origin") === "https://a.example");
 * ```
 */
export function withCors<A extends unknown[]>(
  policy: CorsPolicy | undefined,
  handler: (req: Request, ...rest: A) => Promise<Response>,
): (req: Request, ...rest: A) => Promise<Response> {
  if (!policy) return handler;
  return async (req, ...rest) => {
    const origin = req.headers.get("origin");
    if (isPreflight(req)) return preflightResponse(policy, origin);
    return withCorsHeaders(policy, origin, await handler(req, ...rest));
  };
}

/** The origins of a list, checked and normalized, or `"*"`. */
function checkedOrigins(origins: readonly string[]): string[] | "*" {
  if (origins.includes("*")) {
    if (origins.length === 1) return "*";
    throw new TypeError(
      `"*" allows every origin: it cannot be listed beside others (got ${
        origins.join(", ")
      })`,
    );
  }
  return [...new Set(origins.map(normalizeOrigin))];
}
