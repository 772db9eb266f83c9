/**
 * A small tus 1.0.0 client for the command line (`upload --tus`): finds
 * the endpoint, creates an upload (`creation`), sends a file with `PATCH`
 * from the server's offset, and after a failure asks the server where it
 * stands (`HEAD`) and goes on from there. Upload URLs are remembered in a
 * JSON file, so a run killed midway is resumed by the next one.
 *
 * Only `fetch` and the file system: no dependency. A `PATCH` streams the
 * file (chunked), one `PATCH` for all that is left unless a chunk size is
 * given.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileStream } from "./files.ts";

/** The protocol version this client speaks. */
export const TUS_VERSION = "1.0.0";

/** What is remembered of an upload started by the CLI. */
export interface TusUploadState {
  /** The upload's URL, as the server gave it (absolute). */
  url: string;
  /** The tus endpoint it was created at. */
  endpoint: string;
  /** The file's absolute path, size and modification time (ms). */
  path: string;
  size: number;
  modified: number;
  /** The file's SHA-384, sent as `sha384` metadata (the server checks it). */
  sha384: string;
  /** When the upload was created (ISO 8601). */
  created: string;
}

/** How long a remembered upload is kept at most (servers expire theirs sooner). */
const STATE_MAX_AGE_MS = 30 * 24 * 3600_000;

/**
 * Where the CLI remembers its tus uploads when `--tus-state` is not given:
 * `$BLOBSTORE_TUS_STATE`, else `$XDG_CACHE_HOME/blobstore/tus.json`, else
 * `~/.cache/blobstore/tus.json`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { defaultTusStatePath } from "./tus.ts";
 *
 * const env = { HOME: "/home/ann" } as Record<string, string>;
 * assert.strictEqual(
 *   defaultTusStatePath((name) => env[name]),
 *   "/home/ann/.cache/blobstore/tus.json",
 * );
 * ```
 */
export function defaultTusStatePath(
  getEnv: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string {
  const explicit = getEnv("BLOBSTORE_TUS_STATE");
  if (explicit) return explicit;
  const cache = getEnv("XDG_CACHE_HOME") ||
    join(getEnv("HOME") || getEnv("USERPROFILE") || ".", ".cache");
  return join(cache, "blobstore", "tus.json");
}

/**
 * The uploads the CLI started and has not finished, in one JSON file keyed
 * by endpoint, path, size and modification time. Every change reads the
 * file again and replaces it whole (a temporary file renamed over it), so
 * a reader never sees half of one; two runs changing it at the same
 * moment may lose one's entry, which costs that upload its resumption.
 */
export class TusStateFile {
  /** The file's path. */
  readonly path: string;

  /** Keeps the state in `path` (made, with its directory, on first write). */
  constructor(path: string) {
    this.path = path;
  }

  /** The key of a file's upload to an endpoint. */
  static key(
    endpoint: string,
    file: { path: string; size: number; modified: number },
  ): string {
    return JSON.stringify([endpoint, file.path, file.size, file.modified]);
  }

  /** The upload remembered under `key`, if any. */
  async get(key: string): Promise<TusUploadState | undefined> {
    const uploads = await this.#read();
    return Object.hasOwn(uploads, key) ? uploads[key] : undefined;
  }

  /** Remembers `state` under `key` (and forgets entries past their age). */
  async set(key: string, state: TusUploadState): Promise<void> {
    await this.#update((uploads) => {
      uploads[key] = state;
    });
  }

  /** Forgets the upload under `key`. */
  async delete(key: string): Promise<void> {
    await this.#update((uploads) => {
      delete uploads[key];
    });
  }

  async #read(): Promise<Record<string, TusUploadState>> {
    let text: string;
    try {
      text = await Deno.readTextFile(this.path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return {};
      throw err;
    }
    try {
      const parsed = JSON.parse(text);
      const uploads = parsed?.uploads;
      if (uploads && typeof uploads === "object" && !Array.isArray(uploads)) {
        return uploads;
      }
    } catch {
      // unreadable: start afresh
    }
    return {};
  }

  async #update(
    change: (uploads: Record<string, TusUploadState>) => void,
  ): Promise<void> {
    const uploads = await this.#read();
    change(uploads);
    const now = Date.now();
    for (const [key, state] of Object.entries(uploads)) {
      const created = Date.parse(state?.created);
      if (!(now - created < STATE_MAX_AGE_MS)) delete uploads[key];
    }
    await Deno.mkdir(dirname(this.path), { recursive: true });
    const temporary = `${this.path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeTextFile(
        temporary,
        `${JSON.stringify({ version: 1, uploads }, null, 2)}\n`,
        { mode: 0o600 },
      );
      await Deno.rename(temporary, this.path);
    } catch (err) {
      await Deno.remove(temporary).catch(() => {});
      throw err;
    }
  }
}

/** A request the server answered with an error, or that failed. */
export class TusError extends Error {
  /** The HTTP status (0 when there was no answer). */
  readonly status: number;

  /** `message` says what was asked and what came back. */
  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "TusError";
    this.status = status;
  }
}

/** How the client talks to the server. */
export interface TusClientOptions {
  /** Headers sent with every request (`Authorization`). */
  headers?: Record<string, string>;
  /** The `fetch` to use (default the global one). */
  fetch?: typeof fetch;
  /**
   * How long to wait before each retry after a failure, in ms; the count
   * is the most failures in a row without progress before giving up
   * (default 0.25, 1, 2, 4 and 8 s).
   */
  retryDelaysMs?: number[];
}

const DEFAULT_RETRY_DELAYS_MS = [250, 1000, 2000, 4000, 8000];

/**
 * The tus endpoint for `url`: `url` itself when it answers `OPTIONS` as
 * one (with `Tus-Version`), else the blobstore service's default endpoint
 * under it (`tus/`), when that does; otherwise a {@linkcode TusError}.
 */
export async function findEndpoint(
  url: string,
  options: TusClientOptions = {},
): Promise<string> {
  const base = new URL(url);
  const candidates = [base.href];
  const under = new URL(base);
  if (!under.pathname.endsWith("/")) under.pathname += "/";
  under.pathname += "tus/";
  if (under.href !== base.href) candidates.push(under.href);
  const tried: string[] = [];
  for (const candidate of candidates) {
    const res = await request(options, candidate, { method: "OPTIONS" });
    await res.body?.cancel();
    if (res.headers.has("tus-version")) return candidate;
    tried.push(`${candidate} (HTTP ${res.status})`);
  }
  throw new TusError(
    `no tus endpoint at ${
      tried.join(" or ")
    }: expected an OPTIONS answer with Tus-Version (give the server's base URL or its tus endpoint)`,
    0,
  );
}

/** A file to upload. */
export interface TusFile {
  path: string;
  size: number;
}

/** What {@linkcode tusUpload} does, and what it tells along the way. */
export interface TusUploadOptions extends TusClientOptions {
  /** The tus endpoint (see {@linkcode findEndpoint}). */
  endpoint: string;
  file: TusFile;
  /** `Upload-Metadata` pairs (values as text; sent base64). */
  metadata: Record<string, string>;
  /** An upload URL a previous run left, to resume when the server still has it. */
  resume?: string;
  /** Bytes per `PATCH` (default: all that is left, in one). */
  chunkSize?: number;
  /** Called once a new upload exists, before any byte is sent. */
  onCreated?(url: string): Promise<void>;
  /** Called with the server's offset when resuming `resume` (progress starts there). */
  onResumed?(offset: number): void;
  /** Called when `resume` is gone from the server (and a new upload starts). */
  onForgotten?(why: string): void;
  /** Called after a failure, before waiting `delayMs` to retry. */
  onRetry?(error: Error, delayMs: number): void;
  /** The bytes sent so far moved by `delta` (negative after a failure). */
  onProgress?(delta: number): void;
}

/** A finished upload. */
export interface TusResult {
  url: string;
  /** The blob's SHA-384, as the server named it. */
  hash: string;
  /** The offset it resumed from, when it resumed. */
  resumedAt?: number;
}

/**
 * Uploads `file` to `endpoint`, resuming `resume` when the server still
 * has it; retries failures (connection errors, 5xx, 423, 409) from the
 * server's offset. Resolves with the blob's hash, which the server gives
 * in the final answer's `Upload-Metadata` (`sha384`) or `Content-Location`
 * (`/blobs/{hash}`), or in a `HEAD` of the finished upload.
 */
export async function tusUpload(options: TusUploadOptions): Promise<TusResult> {
  const { file } = options;
  let url: string | undefined;
  let offset = 0;
  let resumedAt: number | undefined;
  if (options.resume) {
    const found = await headOrForget(options, options.resume);
    if (found) {
      url = options.resume;
      offset = found.offset;
      resumedAt = offset;
      options.onResumed?.(offset);
      if (offset >= file.size) {
        return await finished(options, url, found, resumedAt);
      }
    }
  }
  if (url === undefined) {
    url = await create(options);
    await options.onCreated?.(url);
  }
  const delays = options.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  let failures = 0;
  for (;;) {
    const end = Math.min(file.size, offset + (options.chunkSize ?? Infinity));
    let sent = 0;
    try {
      const answer = await patch(options, url, offset, end, (n) => {
        sent += n;
        options.onProgress?.(n);
      });
      options.onProgress?.(answer.offset - offset - sent);
      if (answer.offset <= offset && end > offset) {
        throw new TusError(
          `PATCH ${url} at ${offset}: the server took none of the bytes`,
          204,
        );
      }
      offset = answer.offset;
      failures = 0;
      if (offset >= file.size) {
        return await finished(options, url, answer, resumedAt);
      }
    } catch (err) {
      if (!retryable(err) || failures >= delays.length) throw err;
      const delay = delays[failures++];
      options.onRetry?.(err as Error, delay);
      await new Promise((resolve) => setTimeout(resolve, delay));
      let found: Placed;
      try {
        found = await head(options, url);
      } catch (headErr) {
        if (!retryable(headErr)) throw headErr;
        options.onProgress?.(-sent);
        continue; // counts as the same failure streak: PATCH tries again
      }
      options.onProgress?.(found.offset - offset - sent);
      if (found.offset > offset) failures = 0; // progress: a fresh streak
      offset = found.offset;
      if (offset >= file.size) {
        return await finished(options, url, found, resumedAt);
      }
    }
  }
}

/**
 * The result of a complete upload: the blob its last answer names, else
 * a `HEAD`'s. Only a complete upload's answers name it: before the last
 * byte, `Upload-Metadata` says what the client sent, its own `sha384`
 * included.
 */
async function finished(
  options: TusClientOptions,
  url: string,
  answer: Placed,
  resumedAt: number | undefined,
): Promise<TusResult> {
  const hash = answer.hash ?? (await head(options, url)).hash;
  if (!hash) {
    throw new TusError(
      `the upload ${url} is complete, but the server did not name its blob (no sha384 in Upload-Metadata, no Content-Location /blobs/{hash})`,
      200,
    );
  }
  return { url, hash, resumedAt };
}

/** Where an upload stands: its offset, and its blob once finished. */
interface Placed {
  offset: number;
  hash?: string;
}

/** `HEAD`, or `undefined` (said) when the server no longer has the upload. */
async function headOrForget(
  options: TusUploadOptions,
  url: string,
): Promise<Placed | undefined> {
  try {
    const found = await head(options, url);
    const length = found.length;
    if (length !== undefined && length !== options.file.size) {
      options.onForgotten?.(
        `its Upload-Length is ${length}, the file has ${options.file.size} bytes`,
      );
      return undefined;
    }
    return found;
  } catch (err) {
    if (err instanceof TusError && [403, 404, 410].includes(err.status)) {
      options.onForgotten?.(`the server answered ${err.status}`);
      return undefined;
    }
    throw err;
  }
}

async function create(options: TusUploadOptions): Promise<string> {
  const metadata = Object.entries(options.metadata)
    .map(([key, value]) => `${key} ${base64(value)}`)
    .join(",");
  const res = await request(options, options.endpoint, {
    method: "POST",
    headers: {
      "upload-length": String(options.file.size),
      ...(metadata ? { "upload-metadata": metadata } : {}),
    },
  });
  await expectStatus(res, [201], `POST ${options.endpoint}`);
  const location = res.headers.get("location");
  if (!location) {
    throw new TusError(
      `POST ${options.endpoint}: 201 without a Location`,
      res.status,
    );
  }
  return new URL(location, options.endpoint).href;
}

async function head(
  options: TusClientOptions,
  url: string,
): Promise<Placed & { length?: number }> {
  const res = await request(options, url, { method: "HEAD" });
  await expectStatus(res, [200, 204], `HEAD ${url}`);
  const offset = count(res, "upload-offset", `HEAD ${url}`);
  const length = res.headers.has("upload-length")
    ? count(res, "upload-length", `HEAD ${url}`)
    : undefined;
  return { offset, length, hash: blobHash(res) };
}

async function patch(
  options: TusUploadOptions,
  url: string,
  offset: number,
  end: number,
  onBytes: (n: number) => void,
): Promise<Placed> {
  // Once the server has answered, the rest of the body is not sent: a
  // refusal (423, 409…) comes before the server reads it, and `fetch`
  // would otherwise stream the whole file after it.
  let answered = false;
  const body = fileStream(options.file.path, offset, end).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (answered) throw new Error("the server answered before the end");
        onBytes(chunk.byteLength);
        controller.enqueue(chunk);
      },
    }),
  );
  const res = await request(options, url, {
    method: "PATCH",
    headers: {
      "upload-offset": String(offset),
      "content-type": "application/offset+octet-stream",
    },
    body: end > offset ? body : new Uint8Array(0),
  });
  answered = true;
  await expectStatus(res, [204, 200], `PATCH ${url} at ${offset}`);
  return {
    offset: count(res, "upload-offset", `PATCH ${url}`),
    hash: blobHash(res),
  };
}

/** One request with the tus and caller's headers; a failed one is a {@linkcode TusError} of status 0. */
async function request(
  options: TusClientOptions,
  url: string,
  init: RequestInit & { headers?: Record<string, string> },
): Promise<Response> {
  const doFetch = options.fetch ?? fetch;
  try {
    return await doFetch(url, {
      ...init,
      headers: {
        "tus-resumable": TUS_VERSION,
        ...options.headers,
        ...init.headers,
      },
    });
  } catch (err) {
    throw new TusError(
      `${init.method} ${url} failed: ${
        err instanceof Error ? err.message : err
      }`,
      0,
      { cause: err },
    );
  }
}

async function expectStatus(res: Response, ok: number[], what: string) {
  if (ok.includes(res.status)) {
    await res.body?.cancel();
    return;
  }
  const text = (await res.text().catch(() => "")).trim().slice(0, 300);
  let message = text;
  try {
    message = JSON.parse(text).message ?? text;
  } catch {
    // not JSON
  }
  throw new TusError(
    `${what}: HTTP ${res.status}${message ? ` ${message}` : ""}`,
    res.status,
  );
}

function count(res: Response, name: string, what: string): number {
  const text = res.headers.get(name);
  const value = text !== null && /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value)) {
    throw new TusError(
      `${what}: expected a ${name} header with a byte count, got ${
        JSON.stringify(text)
      }`,
      res.status,
    );
  }
  return value;
}

/**
 * The blob a finished upload made: `sha384` of `Upload-Metadata` (base64
 * of the hex hash), else `Content-Location: …/blobs/{hash}`.
 */
function blobHash(res: Response): string | undefined {
  const metadata = res.headers.get("upload-metadata") ?? "";
  for (const pair of metadata.split(",")) {
    const [key, value] = pair.trim().split(/\s+/);
    if (key !== "sha384" || !value) continue;
    try {
      const hash = atob(value);
      if (/^[0-9a-f]{96}$/.test(hash)) return hash;
    } catch {
      // not base64
    }
  }
  const location = res.headers.get("content-location") ?? "";
  return /\/blobs\/([0-9a-f]{96})$/.exec(location)?.[1];
}

/** Whether a failure may pass by retrying from the server's offset. */
function retryable(err: unknown): boolean {
  if (!(err instanceof TusError)) return false;
  return err.status === 0 || err.status === 409 || err.status === 423 ||
    err.status >= 500;
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}
