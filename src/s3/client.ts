/**
 * The S3 client under `S3Backend`: where each request goes (path-style or
 * virtual-hosted), its SigV4 signature, and how it is sent (through the
 * core's request layer: time limits, retries of idempotent requests, typed
 * errors; streamed bodies with their `Content-Length`).
 *
 * @module
 */

import { type FetchFn, HttpClient } from "../request.ts";
import { S3, type S3Error } from "./error.ts";
import { type S3Params, usesPathStyle } from "./params.ts";
import {
  EMPTY_SHA256,
  presignUrl,
  type S3Credentials,
  sha256Hex,
  signRequest,
  UNSIGNED_PAYLOAD,
} from "./sigv4.ts";
import { sendStreamed } from "./stream_put.ts";

/**
 * One request: its method, the key it is about (none: the bucket), its
 * query parameters and headers, and a body that can be sent again.
 */
export interface S3Request {
  /** The HTTP method. */
  method: string;
  /** The object key under the prefix (none: the bucket itself). */
  key?: string;
  /** Query parameters (`""` for a bare name like `?uploads`). */
  query?: Record<string, string>;
  /** Extra headers to send and sign. */
  headers?: Record<string, string>;
  /** A body that can be sent again: an XML document, or bytes held in memory. */
  body?: string | Uint8Array;
  /** Retry on a connection failure or 5xx (default: GET, HEAD, DELETE). */
  idempotent?: boolean;
}

/**
 * Sends signed requests to one bucket.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { S3Client } from "./client.ts";
 *
 * const client = new S3Client({
 *   endpoint: "http://127.0.0.1:9000", region: "us-east-1", bucket: "blobs",
 *   accessKeyId: "k", secretAccessKey: "s", prefix: "p/",
 * });
 * assert.strictEqual(client.url("a b").href, "http://127.0.0.1:9000/blobs/p/a%20b");
 * ```
 */
export class S3Client {
  readonly #http: HttpClient<S3Error>;
  readonly #credentials: S3Credentials;
  readonly #region: string;
  readonly #base: URL;
  readonly #pathStyle: boolean;
  readonly #bucket: string;
  readonly #prefix: string;

  /** The client of `params.bucket` at `params.endpoint`. */
  constructor(params: S3Params) {
    this.#credentials = {
      accessKeyId: params.accessKeyId,
      secretAccessKey: params.secretAccessKey,
      sessionToken: params.sessionToken,
    };
    this.#region = params.region;
    this.#bucket = params.bucket;
    this.#prefix = params.prefix ?? "";
    const endpoint = new URL(params.endpoint);
    this.#pathStyle = usesPathStyle(endpoint, params.pathStyle);
    this.#base = new URL(endpoint.origin);
    if (!this.#pathStyle) {
      this.#base.hostname = `${params.bucket}.${endpoint.hostname}`;
    }
    const basePath = endpoint.pathname.replace(/\/+$/, "");
    this.#base.pathname = this.#pathStyle
      ? `${basePath}/${params.bucket}`
      : basePath;
    this.#http = new HttpClient(S3, {
      fetch: params.fetch as FetchFn | undefined,
      timeoutMs: params.timeoutMs,
      retries: params.retries,
      retryDelayMs: params.retryDelayMs,
      secrets: () => [params.secretAccessKey, params.sessionToken],
    });
  }

  /** How long to wait for S3, in ms. */
  get timeoutMs(): number {
    return this.#http.timeoutMs;
  }

  /** The bucket's name. */
  get bucket(): string {
    return this.#bucket;
  }

  /** The key prefix every object name goes under. */
  get prefix(): string {
    return this.#prefix;
  }

  /**
   * The URL of object `name` (its key is the prefix and the name, each path
   * segment percent-encoded), or of the bucket when `name` is undefined.
   */
  url(name?: string, query: Record<string, string> = {}): URL {
    const url = new URL(this.#base);
    if (name !== undefined) {
      const key = `${this.#prefix}${name}`;
      url.pathname = `${url.pathname}/${
        key.split("/").map(encodeURIComponent).join("/")
      }`;
    } else if (!url.pathname.endsWith("/")) {
      url.pathname = `${url.pathname}/`;
    }
    for (const [k, v] of Object.entries(query)) url.searchParams.append(k, v);
    return url;
  }

  /**
   * Sends `request` and returns the answer once its headers arrived,
   * whatever its status (see {@linkcode S3Client.errorFrom}).
   */
  async send(operation: string, request: S3Request): Promise<Response> {
    const url = this.url(request.key, request.query);
    const body = request.body;
    const headers = await signRequest({
      method: request.method,
      url,
      headers: {
        ...request.headers,
        ...(body === undefined ? {} : { "content-length": String(size(body)) }),
      },
      credentials: this.#credentials,
      region: this.#region,
      payloadHash: body === undefined
        ? EMPTY_SHA256
        : typeof body === "string"
        ? await sha256Hex(body)
        : UNSIGNED_PAYLOAD,
    });
    headers.delete("content-length"); // fetch sets it from the body
    const init = {
      method: request.method,
      headers: Object.fromEntries(headers),
    };
    if (typeof body !== "object") {
      return await this.#http.request(operation, url.href, { ...init, body }, {
        idempotent: request.idempotent,
      });
    }
    // Bytes in memory: sent once (a put is not retried; its caller is).
    const deadline = this.#http.deadline(operation);
    deadline.start();
    return await this.#http.upload(url.href, {
      ...init,
      body: body as Uint8Array<ArrayBuffer>,
    }, deadline);
  }

  /**
   * Sends `request` with `body`, a stream of exactly `length` bytes, with
   * its `Content-Length` (see `sendStreamed`). Returns the status, headers
   * and text of the answer.
   */
  async sendStream(
    operation: string,
    request: S3Request,
    body: ReadableStream<Uint8Array>,
    length: number,
  ): Promise<{ status: number; headers: Headers; text: string }> {
    const url = this.url(request.key, request.query);
    const headers = await signRequest({
      method: request.method,
      url,
      headers: { ...request.headers, "content-length": String(length) },
      credentials: this.#credentials,
      region: this.#region,
      payloadHash: UNSIGNED_PAYLOAD,
    });
    try {
      return await sendStreamed(request.method, url, headers, body, {
        timeoutMs: this.#http.timeoutMs,
        onTimeout: () =>
          this.#http.error(
            operation,
            0,
            `no answer within ${this.#http.timeoutMs} ms (timeoutMs)`,
          ),
      });
    } catch (err) {
      throw this.#transportError(operation, err);
    }
  }

  /** A URL anyone may GET `name` with until `expiresIn` seconds from now. */
  presign(
    name: string,
    expiresIn: number,
    signedHeaders?: Record<string, string>,
  ): Promise<URL> {
    return presignUrl({
      url: this.url(name),
      credentials: this.#credentials,
      region: this.#region,
      expiresIn,
      signedHeaders,
    });
  }

  /** S3's error for a failed answer (its XML read for code and request id). */
  errorFrom(operation: string, res: Response): Promise<S3Error> {
    return this.#http.errorFrom(operation, res);
  }

  /** S3's error for `operation` with `status` and `text` (secrets redacted). */
  error(operation: string, status: number, text: string): S3Error {
    return this.#http.error(operation, status, text);
  }

  /** Reads a small answer (XML) within the time limit. */
  readText(res: Response, operation: string): Promise<string> {
    return this.#http.readText(res, operation);
  }

  /** The answer's body, failing typed when S3 stalls or the network cuts it. */
  watch(res: Response, operation: string): ReadableStream<Uint8Array> {
    return this.#http.watch(res, operation);
  }

  /**
   * What a streamed request failed with: the body's own error (a failed
   * verification, the source's failure) unchanged, or the network's as an
   * S3Error with status 0.
   */
  #transportError(operation: string, err: unknown): unknown {
    const network = err instanceof Error &&
      (err.name === "Error" || err.name === "TypeError") &&
      "code" in err && typeof err.code === "string";
    if (!network) return err;
    return this.#http.error(operation, 0, (err as Error).message, {
      cause: err,
    });
  }
}

function size(body: string | Uint8Array): number {
  return typeof body === "string"
    ? new TextEncoder().encode(body).byteLength
    : body.byteLength;
}
