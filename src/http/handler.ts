/**
 * `createHandler`: the blob store as a plain `(req) => Promise<Response>`
 * for `Deno.serve`, `deno serve` and Deno Deploy, and for Node and Bun.
 *
 * @module
 */

import type { Store } from "../store.ts";
import { type Authorizer, tokenFromEnv } from "./auth.ts";
import {
  type BlobRouteOptions,
  getBlob,
  postBlob,
  putBlob,
  redirectOptions,
} from "./blob_routes.ts";
import { DEFAULT_BODY_IDLE_TIMEOUT } from "./body.ts";
import { type CorsOptions, resolveCors, withCors } from "./cors.ts";
import {
  errorResponse,
  HttpError,
  internalErrorResponse,
  jsonResponse,
} from "./errors.ts";
import {
  ConcurrencyLimiter,
  remoteAddressKey,
  type ServeInfo,
} from "./limits.ts";
import { countRequests, Metrics, metricsResponse } from "./metrics.ts";
import { MultipartBlobs, SERVICE_OWNER } from "../multipart_blobs.ts";
import { TUS_VERSION } from "../tus/headers.ts";
import {
  DEFAULT_TUS_PREFIX,
  type TusOptions,
  tusPathSegments,
  TusService,
} from "../tus/handler.ts";
import type { MultipartRegistry } from "../catalog.ts";
import {
  createUpload,
  deleteUpload,
  finishUpload,
  getUpload,
  putPart,
  type UploadRouteOptions,
} from "./upload_routes.ts";

const DAY = 24 * 60 * 60 * 1000;

/**
 * Options of {@linkcode createHandler}.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { HandlerOptions } from "@blobstore/blobstore/http";
 *
 * const options: HandlerOptions = { prefix: "/store", maxBodySize: 1 << 30 };
 * assert(options.prefix === "/store");
 * ```
 */
export interface HandlerOptions {
  /** The path the routes are mounted under, like `"/store"` (default: none). */
  prefix?: string;
  /**
   * Where the service remembers which upload serves each multipart blob
   * (default: the store's catalog's own, `Catalog.multipart`, so every
   * process or isolate sharing the catalog finds the multipart blobs any
   * of them finished).
   */
  registry?: MultipartRegistry;
  /**
   * The largest body a `PUT` of a blob or a part, or a `POST /blobs`, may
   * declare, in bytes (default 2^32, 4 GiB); 413 above. The largest blob is
   * this size when put whole; in parts it is bounded by the store's
   * `maxParts` and `maxPartSize` instead (and each part by this size). It
   * is also the largest tus `Upload-Length` (`Tus-Max-Size`).
   */
  maxBodySize?: number;
  /**
   * How long a request body may stall, in milliseconds, before the request
   * is answered with 408 and its partial upload dropped (default 30 000).
   * Only silence counts: a body that keeps flowing, however slowly, is
   * bounded by `maxConcurrentUploads` instead.
   */
  bodyIdleTimeout?: number;
  /**
   * How many requests carrying a body (`PUT` of blobs and parts, the
   * `POST`s of blobs and uploads, tus `POST` and `PATCH`) one client may
   * have in flight at once (default 16); 429 with `Retry-After` beyond it.
   */
  maxConcurrentUploads?: number;
  /**
   * Tells clients apart for `maxConcurrentUploads`. Default: the remote
   * address the server passes as the handler's second argument (as
   * `Deno.serve` does), else the first `X-Forwarded-For` address, else
   * one key for all. Behind a reverse proxy, read the header it sets.
   * (A method, so a function typed with `Deno.ServeHandlerInfo` fits too.)
   */
  clientKey?(req: Request, info?: ServeInfo): string;
  /**
   * Decides whether a request may write (every route but `GET`/`HEAD` of a
   * blob; and those too with `authorizeReads`); `false` means 401.
   * Default: `Authorization: Bearer $BLOBSTORE_TOKEN` when that variable is
   * set, else everyone; when it cannot be read (no permission to read the
   * environment), every write is refused with 503, since the token may be
   * set. Pass `false` to let everyone in whatever the environment says.
   */
  authorize?: Authorizer | false;
  /** Whether reads go through `authorize` too (default `false`). */
  authorizeReads?: boolean;
  /**
   * Which web pages, by origin, may call the service from a browser
   * (CORS): `origins`, exact `scheme://host[:port]` strings or `"*"`;
   * `credentials` for pages sending cookies (default `false`; a bearer
   * token needs none); `maxAge`, how long browsers cache a preflight in
   * seconds (default 600). Preflights from those origins are answered
   * without `authorize`, and every answer to them exposes `ETag`,
   * `Content-Range`, `Repr-Digest` and the like. Default:
   * `BLOBSTORE_CORS_ORIGINS` (comma-separated origins, or `*`) when that
   * variable is set and readable, else off. Pass `false` to keep it off
   * whatever the environment says.
   */
  cors?: CorsOptions | false;
  /** How long an upload lives when the client names no expiry, in ms (default a day). */
  uploadTtl?: number;
  /** The furthest expiry a client may ask for, in ms from now (default 30 days). */
  maxUploadTtl?: number;
  /**
   * Redirect downloads: a `GET` of a blob put whole is answered with a 307
   * to a URL the storage serves directly (the backend's `signedUrl`: S3
   * presigned GETs, Swift TempURLs), valid for `expiresIn` seconds
   * (default 300; `true` takes the default), ranges included (the client
   * sends its `Range` there). The 307 is `Cache-Control: private` for half
   * that time. `HEAD`, 304, 412, multipart blobs, and requests carrying
   * `If-Match` or `If-Range` are answered as without it, and so is every
   * request when the backend has no `signedUrl`. Default off.
   */
  redirect?: boolean | { expiresIn?: number };
  /** The owner set on finished uploads (default `"blobstore-http"`). */
  owner?: string;
  /**
   * Metrics in the Prometheus text format at `GET /metrics` (a read: it
   * goes through `authorize` only with `authorizeReads`): requests by
   * route, method and status, bytes in and out, request durations, the
   * uploads in flight, and the last garbage collection a caller recorded.
   * `true` makes a {@linkcode Metrics} of its own; pass one you made to
   * record into it too (`metrics.recordGc(await collect(…))`). Default
   * off: no route, nothing counted.
   */
  metrics?: boolean | Metrics;
  /**
   * The tus 1.0.0 resumable upload endpoint (core protocol, `creation`,
   * `creation-with-upload`, `expiration`, `termination`, `checksum`):
   * `POST <prefix>` creates an upload, `HEAD`, `PATCH` and `DELETE
   * <prefix><id>` work on it, and a finished upload's blob is served at
   * `/blobs/{hash}`. `prefix` is under the handler's own (default
   * `"/tus/"`); `expiresInMs`, how long an upload lives (default
   * `uploadTtl`). Its requests go through `authorize` (all but `OPTIONS`)
   * and `maxConcurrentUploads` like the other writes. On by default; pass
   * `false` to leave it out.
   */
  tus?: TusOptions | false;
  /**
   * Called with every failure that is not the client's fault, before the
   * 500 goes out (default: `console.error`). Never sent to the client.
   */
  onError?: (err: unknown, req: Request) => void;
}

interface Context {
  req: Request;
  url: URL;
  params: string[];
}

interface Method {
  /** Whether it writes (and so goes through `authorize`). */
  write: boolean;
  /** Whether it reads a request body (and so counts against `maxConcurrentUploads`). */
  body?: boolean;
  /**
   * Whether its response body streams from storage, where it may fail
   * after the headers went out (such a failure is reported to `onError`).
   */
  streams?: boolean;
  run(ctx: Context): Promise<Response>;
}

interface Route {
  /** The path segments; `*` matches one segment and becomes a param. */
  path: string[];
  /**
   * The handlers by method. A route with `GET` and no `HEAD` answers
   * `HEAD` with what `GET` answers, without the body.
   */
  methods: Record<string, Method>;
  /** Headers set on every answer of the route, errors included. */
  headers?: Record<string, string>;
  /** The route's name in metrics, when not its path (a mount point that varies). */
  pattern?: string;
}

/**
 * Returns a request handler serving `store` over HTTP:
 *
 * | Route | |
 * |---|---|
 * | `PUT /blobs/{sha384}` | store the body (`Content-Length` required): 201 if this put stored it (exactly one of concurrent puts of a new blob), 200 if it was there; `If-None-Match: *` → 412 if it was there |
 * | `POST /blobs` | store the body under the SHA-384 the service computes (`Content-Length` required): 201 with `Location: /blobs/{hash}` and `{"hash", "size"}`, 200 if it was there; a `Repr-Digest: sha-384=:…:` that does not match → 422, nothing stored |
 * | `GET`, `HEAD /blobs/{sha384}` | the blob, with `ETag`, `Repr-Digest`, ranges (206/416), `If-None-Match` → 304, `If-Match` → 412; with `redirect`, a `GET` of a single blob → 307 to the storage |
 * | `POST /uploads` | start a multipart upload: 201 `{"id", "expires"}` |
 * | `PUT /uploads/{id}/parts/{n}?hash=…&offset=…` | store one part |
 * | `GET`, `HEAD /uploads/{id}` | the upload's state |
 * | `POST /uploads/{id}/finish` | `{"parts": [{"hash"}]}` → `{"hash", "size", "index"}` |
 * | `DELETE /uploads/{id}` | drop an upload: 204; 409 if the service owns it (its blob is served) |
 * | `POST /tus/` · `HEAD`, `PATCH`, `DELETE /tus/{id}` · `OPTIONS` | tus 1.0.0 resumable uploads (see `tus`), every answer with `Tus-Resumable: 1.0.0` |
 * | `GET`, `HEAD /metrics` | with `metrics`, the Prometheus text exposition |
 *
 * `HEAD` works wherever `GET` does. Errors are
 * `{"error": code, "message": text}` with 400, 401, 404, 405, 408, 409,
 * 411, 412, 413, 416, 422, 429 or 503 (a put that lost a race with `gc`,
 * with `Retry-After`); an unexpected failure, corrupt storage among them,
 * is a bare 500 reported to `onError`, and so is a failure of a blob's
 * body after its headers went out (the body is then cut short). Bodies
 * stream in and out; nothing is buffered whole.
 *
 * The handler takes the server's `Deno.ServeHandlerInfo` as an optional
 * second argument, as `Deno.serve` passes it, to tell clients apart (its
 * type is the structural `ServeInfo`: on Node and Bun, call it with the
 * request alone).
 *
 * @example Serving a memory store on a free port
 * ```ts
 * import assert from "node:assert";
 * import { MemoryBackend, MemoryCatalog, Store } from "@blobstore/blobstore";
 * import { createHandler } from "@blobstore/blobstore/http";
 *
 * const store = new Store({ catalog: new MemoryCatalog(), backend: new MemoryBackend() });
 * const handler = createHandler(store, { authorize: false });
 * const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
 * const res = await fetch(`http://127.0.0.1:${server.addr.port}/blobs/${"0".repeat(96)}`);
 * assert(res.status === 404 && (await res.json()).error === "not_found");
 * await server.shutdown();
 * ```
 */
export function createHandler(
  store: Store,
  options: HandlerOptions = {},
): (req: Request, info?: ServeInfo) => Promise<Response> {
  const prefix = normalizePrefix(options.prefix);
  const authorize = options.authorize === false
    ? undefined
    : options.authorize ?? tokenFromEnv();
  const authorizeReads = options.authorizeReads ?? false;
  const onError = options.onError ?? ((err) => console.error(err));
  const serviceOwner = options.owner ?? SERVICE_OWNER;
  const blobs = new MultipartBlobs(
    store,
    options.registry ?? store.catalog.multipart,
    serviceOwner,
  );
  const blobPath = (hash: string) => `${prefix}/blobs/${hash}`;
  const maxBodySize = options.maxBodySize ?? 2 ** 32;
  const bodyIdleTimeout = options.bodyIdleTimeout ?? DEFAULT_BODY_IDLE_TIMEOUT;
  const uploads = new ConcurrencyLimiter(options.maxConcurrentUploads ?? 16);
  const clientKey = options.clientKey ?? remoteAddressKey;
  const metrics = options.metrics === true
    ? new Metrics()
    : options.metrics || undefined;
  const blobOptions: BlobRouteOptions = {
    maxBodySize,
    bodyIdleTimeout,
    blobPath,
    cacheControl: `${
      authorize && authorizeReads ? "private" : "public"
    }, max-age=31536000, immutable`,
    redirect: redirectOptions(options.redirect, store.backend),
  };
  const uploadOptions: UploadRouteOptions = {
    maxBodySize,
    bodyIdleTimeout,
    blobPath,
    uploadPath: (id) => `${prefix}/uploads/${encodeURIComponent(id)}`,
    uploadTtl: options.uploadTtl ?? DAY,
    maxUploadTtl: options.maxUploadTtl ?? 30 * DAY,
  };
  const routes: Route[] = [
    {
      path: [],
      methods: {
        GET: {
          write: false,
          run: () => Promise.resolve(jsonResponse({ service: "blobstore" })),
        },
      },
    },
    {
      path: ["blobs"],
      methods: {
        POST: {
          write: true,
          body: true,
          run: (c) => postBlob(c.req, blobs, blobOptions),
        },
      },
    },
    {
      path: ["blobs", "*"],
      methods: {
        GET: {
          write: false,
          streams: true,
          run: (c) => getBlob(c.req, blobs, c.params[0], blobOptions),
        },
        HEAD: {
          write: false,
          run: (c) => getBlob(c.req, blobs, c.params[0], blobOptions),
        },
        PUT: {
          write: true,
          body: true,
          run: (c) => putBlob(c.req, blobs, c.params[0], blobOptions),
        },
      },
    },
    {
      path: ["uploads"],
      methods: {
        POST: {
          write: true,
          body: true,
          run: (c) => createUpload(c.req, store, uploadOptions),
        },
      },
    },
    {
      path: ["uploads", "*"],
      methods: {
        GET: { write: true, run: (c) => getUpload(store, c.params[0]) },
        DELETE: {
          write: true,
          run: (c) => deleteUpload(store, c.params[0], serviceOwner),
        },
      },
    },
    {
      path: ["uploads", "*", "parts", "*"],
      methods: {
        PUT: {
          write: true,
          body: true,
          run: (c) =>
            putPart(
              c.req,
              store,
              c.params[0],
              c.params[1],
              c.url.searchParams,
              uploadOptions,
            ),
        },
      },
    },
    {
      path: ["uploads", "*", "finish"],
      methods: {
        POST: {
          write: true,
          body: true,
          run: (c) => finishUpload(c.req, blobs, c.params[0], uploadOptions),
        },
      },
    },
  ];
  if (options.tus !== false) {
    const tusOptions = options.tus ?? {};
    const segments = tusPathSegments(tusOptions.prefix ?? DEFAULT_TUS_PREFIX);
    const tusPrefix = `${prefix}/${
      segments.map(encodeURIComponent).join("/")
    }/`;
    const tus = new TusService({
      store,
      blobs,
      maxBodySize,
      bodyIdleTimeout,
      expiresInMs: tusOptions.expiresInMs ?? uploadOptions.uploadTtl,
      partSize: tusOptions.partSize,
      uploadPath: (id) => `${tusPrefix}${encodeURIComponent(id)}`,
      blobPath,
    });
    const headers = { "tus-resumable": TUS_VERSION };
    const discovery = {
      write: false,
      run: () => Promise.resolve(tus.options()),
    };
    routes.push({
      path: segments,
      pattern: "/tus",
      headers,
      methods: {
        POST: { write: true, body: true, run: (c) => tus.create(c.req) },
        OPTIONS: discovery,
      },
    }, {
      path: [...segments, "*"],
      pattern: "/tus/{id}",
      headers,
      methods: {
        HEAD: { write: true, run: (c) => tus.head(c.req, c.params[0]) },
        PATCH: {
          write: true,
          body: true,
          run: (c) => tus.patch(c.req, c.params[0]),
        },
        DELETE: { write: true, run: (c) => tus.terminate(c.req, c.params[0]) },
        // X-HTTP-Method-Override, for clients that cannot send PATCH.
        POST: {
          write: true,
          body: true,
          run: (c) => tus.override(c.req, c.params[0]),
        },
        OPTIONS: discovery,
      },
    });
  }
  if (metrics) {
    routes.push({
      path: ["metrics"],
      methods: {
        GET: {
          write: false,
          run: () => Promise.resolve(metricsResponse(metrics)),
        },
      },
    });
  }

  const routed = withCors(resolveCors(options.cors), async (
    req: Request,
    info?: ServeInfo,
  ): Promise<Response> => {
    let release: (() => void) | undefined;
    let route: Route | undefined;
    try {
      const url = requestURL(req);
      const segments = pathSegments(url.pathname, prefix);
      const match = segments && matchRoute(routes, segments);
      if (!match) {
        throw new HttpError(404, "not_found", `no route for ${url.pathname}`);
      }
      route = match.route;
      const handler = methodOf(match.route, req.method);
      if (!handler) {
        const allow = allowedMethods(match.route).join(", ");
        throw new HttpError(
          405,
          "method_not_allowed",
          `method ${req.method} not allowed on ${url.pathname} (expected ${allow})`,
          { allow },
        );
      }
      if (
        authorize && (handler.write || authorizeReads) &&
        !(await authorize(req))
      ) {
        throw new HttpError(
          401,
          "unauthorized",
          "missing or invalid credentials (expected Authorization: Bearer <token>)",
          { "www-authenticate": 'Bearer realm="blobstore"' },
        );
      }
      if (handler.body) {
        release = uploads.acquire(clientKey(req, info));
        if (metrics) release = metrics.trackUpload(release);
      }
      const res = await handler.run({ req, url, params: match.params });
      return withRouteHeaders(
        handler.streams ? reportBodyErrors(res, req, onError) : res,
        route,
      );
    } catch (err) {
      const res = errorResponse(err);
      if (res) return withRouteHeaders(res, route);
      onError(err, req);
      return withRouteHeaders(internalErrorResponse(), route);
    } finally {
      // The body has been read, or abandoned with an error: the slot is free.
      release?.();
    }
  });
  if (!metrics) return routed;
  // The route's pattern, never the path: a bounded set of series.
  const routeOf = (req: Request): string => {
    try {
      const segments = pathSegments(new URL(req.url).pathname, prefix);
      const route = segments && matchRoute(routes, segments)?.route;
      return route ? route.pattern ?? routePattern(route.path) : "other";
    } catch {
      return "other";
    }
  };
  return countRequests(metrics, routeOf, routed);
}

/** The names of the params after these segments, for {@linkcode routePattern}. */
const PARAM_NAMES: Record<string, string> = {
  blobs: "hash",
  uploads: "id",
  parts: "n",
};

/** A route's path as a metrics label: `["blobs", "*"]` is `/blobs/{hash}`. */
function routePattern(path: string[]): string {
  return "/" +
    path.map((part, i) =>
      part === "*" ? `{${PARAM_NAMES[path[i - 1]] ?? "param"}}` : part
    ).join("/");
}

/** `res` with the headers `route` sets on every answer (tus: `Tus-Resumable`). */
function withRouteHeaders(res: Response, route: Route | undefined): Response {
  for (const [name, value] of Object.entries(route?.headers ?? {})) {
    res.headers.set(name, value);
  }
  return res;
}

/**
 * The handler of `method` on `route`: `HEAD` falls back on `GET`. Only
 * the route's own keys count, so a method named like an `Object`
 * property (`constructor`) is a 405, not a crash.
 */
function methodOf(route: Route, method: string): Method | undefined {
  const found = Object.hasOwn(route.methods, method)
    ? route.methods[method]
    : undefined;
  if (found || method !== "HEAD" || !route.methods.GET) return found;
  const get = route.methods.GET;
  return { ...get, streams: false, run: async (c) => headOf(await get.run(c)) };
}

/** The methods `route` answers, for `Allow`: `HEAD` wherever `GET` is. */
function allowedMethods(route: Route): string[] {
  return Object.keys(route.methods).flatMap((method) =>
    method === "GET" && !route.methods.HEAD ? ["GET", "HEAD"] : [method]
  );
}

/**
 * The answer to `HEAD` made from the answer to `GET`: the same status and
 * headers, the body cancelled unread. A response that does not say its
 * `Content-Length` is passed on whole (the server sends no body to a
 * `HEAD`), so that the length it would have is not replaced by 0.
 */
function headOf(res: Response): Response {
  if (!res.body || !res.headers.has("content-length")) return res;
  res.body.cancel().catch(() => {});
  return new Response(null, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/**
 * `res` with a body that reports its failure to `onError` and still fails
 * with it, so the client sees an aborted body rather than a clean end: a
 * blob found corrupt or gone halfway through is not the client's fault,
 * but its status has already gone out. A client that goes away cancels
 * the body, which reports nothing.
 */
function reportBodyErrors(
  res: Response,
  req: Request,
  onError: (err: unknown, req: Request) => void,
): Response {
  if (!res.body) return res;
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (err) {
        onError(err, req);
        throw err;
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, {
    status: res.status,
    statusText: res.statusText,
    headers: res.headers,
  });
}

/**
 * The request's URL. `Deno.serve` passes an absolute-form request target
 * through as is, so a client can send one no URL parser accepts
 * (`PUT http://%E2%80%AE/ HTTP/1.1`): that is the client's mistake, a 400.
 */
function requestURL(req: Request): URL {
  try {
    return new URL(req.url);
  } catch {
    throw new HttpError(
      400,
      "bad_request",
      `malformed request URL ${JSON.stringify(req.url.slice(0, 200))}`,
    );
  }
}

function normalizePrefix(prefix = ""): string {
  const trimmed = prefix.replace(/\/+$/, "");
  return trimmed === "" || trimmed.startsWith("/") ? trimmed : `/${trimmed}`;
}

/** The decoded segments of `pathname` under `prefix`, or `undefined` outside it. */
function pathSegments(pathname: string, prefix: string): string[] | undefined {
  if (
    prefix !== "" && pathname !== prefix && !pathname.startsWith(`${prefix}/`)
  ) {
    return undefined;
  }
  const rest = pathname.slice(prefix.length).replace(/^\/+|\/+$/g, "");
  if (rest === "") return [];
  try {
    return rest.split("/").map(decodeURIComponent);
  } catch {
    throw new HttpError(
      400,
      "bad_request",
      `malformed path ${JSON.stringify(pathname)}`,
    );
  }
}

function matchRoute(
  routes: Route[],
  segments: string[],
): { route: Route; params: string[] } | undefined {
  for (const route of routes) {
    if (route.path.length !== segments.length) continue;
    const params: string[] = [];
    const ok = route.path.every((part, i) => {
      if (part === "*") params.push(segments[i]);
      return part === "*" || part === segments[i];
    });
    if (ok) return { route, params };
  }
  return undefined;
}
