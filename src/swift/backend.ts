/**
 * A backend on OpenStack Swift, over nothing but `fetch`.
 *
 * @module
 */

import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
} from "../backend.ts";
import { BadParamsError, NotFoundError } from "../errors.ts";
import { resolveRange } from "../range.ts";
import { VerifyStream } from "../verify.ts";
import { discard, type FetchFn, HttpClient } from "../request.ts";
import { SwiftAuth, type SwiftCredentials } from "./auth.ts";
import { SWIFT, SwiftError } from "./error.ts";
import { SegmentReader } from "./segments.ts";
import {
  type ListingEntry,
  segmentName,
  segmentPrefix,
  segmentSets,
} from "./segment_sets.ts";

/**
 * Swift's default object size limit (`max_file_size`, 5 GiB + 2 bytes),
 * rounded down: the default segment size, above which a blob becomes a
 * Static Large Object.
 */
export const DEFAULT_SEGMENT_SIZE = 5 * 1024 ** 3;

/** Swift's default `max_manifest_segments`: segments per SLO manifest. */
const MAX_SEGMENTS = 1000;

/** Objects per listing page (Swift's default `container_listing_limit`). */
const LISTING_PAGE = 10_000;

/**
 * How to reach Swift and where to keep the blobs. The first seven fields are
 * those of the Go charmstore's Swift configuration.
 *
 * @example Keystone v3
 * ```ts
 * import assert from "node:assert";
 * import type { SwiftParams } from "./backend.ts";
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
}

/** One segment of a Static Large Object manifest. */
interface ManifestSegment {
  path: string;
  etag: string | null;
  size_bytes: number;
}

/**
 * A {@linkcode Backend} storing each blob as an object in a Swift container.
 *
 * - put streams the body to Swift (chunked transfer encoding) through a
 *   `VerifyStream`; nothing is buffered beyond the chunk in flight and no
 *   temporary file is written. A failed verification or source aborts the
 *   request before its end, so Swift discards the object. Blobs above
 *   `segmentSize` become segments in `segmentContainer` plus a Static Large
 *   Object manifest; `remove` deletes both. A put killed between its
 *   segments and its manifest leaves segments that `list` reports under the
 *   blob's name and `remove` deletes, so the orphan sweep clears them.
 * - get asks for ranges with a `Range` header; cancelling the body aborts
 *   the request.
 * - Auth is Keystone v3 or v1 (tempauth); the token is cached, renewed
 *   before it expires, and a 401 leads to one re-authentication and retry.
 *   Errors are {@linkcode SwiftError}s (with the HTTP status and Swift's
 *   text; never a secret or a token) or `NotFoundError`.
 *
 * @example
 * ```ts ignore
 * import { SwiftBackend } from "./backend.ts";
 * import { sha384 } from "../digest.ts";
 *
 * const backend = new SwiftBackend({
 *   authURL: "http://127.0.0.1:8390/auth/v1.0",
 *   tenant: "test",
 *   username: "tester",
 *   secret: "testing",
 *   bucket: "blobs",
 * });
 * const bytes = new TextEncoder().encode("hello");
 * await backend.put("greeting", new Blob([bytes]).stream(), 5, await sha384(bytes));
 * const { body } = await backend.get("greeting", { start: 1 });
 * console.log(await new Response(body).text()); // "ello"
 * ```
 */
export class SwiftBackend implements Backend {
  readonly #auth: SwiftAuth;
  readonly #http: HttpClient<SwiftError>;
  readonly #container: string;
  readonly #segmentContainer: string;
  readonly #segmentSize: number;
  /** Containers known to exist (created on first put), one PUT each. */
  readonly #containers = new Map<string, Promise<void>>();
  /** The token each response of #request was got with. */
  readonly #tokens = new WeakMap<Response, string>();
  /** The last token Swift accepted (see #ensureAcceptedToken). */
  #acceptedToken: string | undefined;

  /** Creates the backend; nothing is sent until the first call. */
  constructor(params: SwiftParams) {
    this.#container = checkContainer("bucket", params.bucket);
    this.#segmentContainer = checkContainer(
      "segmentContainer",
      params.segmentContainer ?? `${params.bucket}_segments`,
    );
    if (this.#segmentContainer === this.#container) {
      throw new BadParamsError(
        `segmentContainer must differ from bucket (got "${this.#container}" for both)`,
      );
    }
    this.#segmentSize = params.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    if (!Number.isSafeInteger(this.#segmentSize) || this.#segmentSize < 1) {
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
    for (const field of ["authURL", "username", "secret"] as const) {
      if (!params[field]) {
        throw new BadParamsError(
          `missing Swift ${field} (expected a non-empty string, got ${
            JSON.stringify(field === "secret" ? "" : params[field])
          })`,
        );
      }
    }
    const options = {
      fetch: params.fetch,
      timeoutMs: params.timeoutMs,
      retries: params.retries,
      retryDelayMs: params.retryDelayMs,
    };
    this.#auth = new SwiftAuth(params, options);
    this.#http = new HttpClient(SWIFT, {
      ...options,
      secrets: () => this.#auth.secrets,
    });
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    // validates the bounds; the size is not known until Swift answers
    const { start, end } = resolveRange(range, Number.MAX_SAFE_INTEGER);
    if (range?.end !== undefined && end <= start) {
      return { size: await this.#size(name), body: emptyStream() };
    }
    const openEnded = range?.end === undefined;
    const headers: Record<string, string> = {};
    if (start > 0 || !openEnded) {
      headers.Range = `bytes=${start}-${openEnded ? "" : end - 1}`;
    }
    const operation = `GET object "${name}"`;
    const res = await this.#request(operation, "GET", this.#path(name), {
      headers,
    });
    if (res.status === 404) {
      await discard(res);
      throw new NotFoundError(`swift object "${name}" not found`);
    }
    if (res.status === 416) {
      // the range starts at or past the end: nothing to read
      await discard(res);
      return {
        size: totalFromContentRange(res, operation),
        body: emptyStream(),
      };
    }
    if (res.status === 206) {
      const size = totalFromContentRange(res, operation);
      return { size, body: this.#watched(res, operation) };
    }
    if (res.status === 200) {
      const size = Number(res.headers.get("Content-Length"));
      if (!Number.isSafeInteger(size)) {
        await discard(res);
        throw new SwiftError(operation, 200, "expected a Content-Length");
      }
      const body = this.#watched(res, operation);
      // a server that ignored the Range header: cut the range out ourselves
      return headers.Range
        ? { size, body: body.pipeThrough(sliceStream(start, end)) }
        : { size, body };
    }
    throw await this.#error(operation, res);
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    const source = body.pipeThrough(new VerifyStream(size, hash)).getReader();
    try {
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new BadParamsError(
          `invalid blob size (expected a non-negative integer, got ${size})`,
        );
      }
      const segments = new SegmentReader(source);
      if (size <= this.#segmentSize) {
        await this.#ensureContainer(this.#container);
        await this.#ensureAcceptedToken();
        await this.#putObject(this.#container, name, segments, size, true);
      } else {
        await this.#putLarge(name, segments, size);
      }
    } catch (err) {
      // release the caller's stream, whatever state it is in
      await source.cancel(err).catch(() => {});
      throw err;
    }
  }

  /**
   * See {@linkcode Backend.remove}. Also removes the segments of a put
   * killed before it wrote its manifest (see {@linkcode SwiftBackend.list}).
   */
  async remove(name: string): Promise<void> {
    // One request removes a Static Large Object with its segments; Swift
    // 2.30 refuses it for a plain object ("Not an SLO manifest"), which a
    // plain DELETE then removes. Newer Swifts delete plain objects at once.
    const operation = `DELETE object "${name}"`;
    for (let attempt = 0;; attempt++) {
      const res = await this.#request(
        operation,
        "DELETE",
        `${this.#path(name)}?multipart-manifest=delete`,
        { headers: { Accept: "application/json" } },
      );
      if (res.status === 404) {
        await discard(res);
        return await this.#removeSegments(name);
      }
      if (!res.ok) throw await this.#error(operation, res);
      const result = parseJson(
        await this.#http.readText(res, operation),
      ) as BulkDeleteResult | undefined;
      const status = parseInt(result?.["Response Status"] ?? "", 10);
      if (status >= 200 && status < 300 || status === 404) {
        // No manifest (Swift counts it "Not Found" and deletes nothing): a
        // killed put may have left segments all the same.
        if (result?.["Number Deleted"] === 0 || status === 404) {
          await this.#removeSegments(name);
        }
        return;
      }
      const errors = result?.Errors ?? [];
      if (errors.some(([, why]) => /not an slo manifest/i.test(why))) {
        return await this.#deletePlain(this.#container, name);
      }
      // the SLO middleware answers 200 and reports a refused token inside
      if (attempt === 0 && errors.some(([, why]) => why.startsWith("401"))) {
        this.#auth.invalidate(this.#tokens.get(res) ?? "");
        continue;
      }
      throw this.#http.error(
        operation,
        status || res.status,
        JSON.stringify(errors),
      );
    }
  }

  /**
   * See {@linkcode Backend.list}: every blob of the container, then one
   * entry per set of segments whose manifest does not exist (the debris of
   * a put killed after some segments, before its manifest), named as the
   * blob was, with the segments' total size and the time of the newest:
   * `remove` of that name deletes the segments. That is how the orphan
   * sweep (`Store.sweepOrphans`) finds them, with its grace period
   * protecting puts still running (see `#unfinishedSets`).
   */
  async *list(): AsyncIterable<BackendObject> {
    for await (const entry of this.#listing(this.#container)) {
      yield {
        name: entry.name,
        size: entry.bytes,
        // Swift lists UTC times without a zone
        modified: new Date(`${entry.last_modified}Z`),
      };
    }
    for await (const { name, size, modified } of this.#unfinishedSets()) {
      yield { name, size, modified };
    }
  }

  /**
   * The segment sets of this bucket without a manifest.
   *
   * The race: a put writes its manifest only after its last segment, so a
   * put still running has a set without a manifest too, and only age tells
   * it from a dead one. A set's time is that of its newest segment (Swift
   * stamps an object when its upload starts), and a running put started
   * that segment no earlier than it started itself, so its set looks no
   * older than the put has been running. The sweep leaves objects younger
   * than its grace period alone: with a period longer than any put takes,
   * it never touches a running put. A put slower than that could lose its
   * segments: its manifest PUT then fails (Swift checks that every segment
   * exists), unless it lands between this check and the deletes, which
   * would leave a blob missing segments.
   */
  async *#unfinishedSets() {
    const listing = this.#listing(
      this.#segmentContainer,
      `${this.#container}/`,
    );
    for await (const set of segmentSets(listing, this.#container)) {
      // looked up now, not from an earlier listing of the container: a put
      // that ended since then has its manifest
      if (!await this.#exists(set.name)) yield set;
    }
  }

  /** Deletes every segment of blob `name` (absent ones are not an error). */
  async #removeSegments(name: string): Promise<void> {
    const prefix = segmentPrefix(this.#container, name);
    const listing = this.#listing(this.#segmentContainer, prefix);
    for await (const entry of listing) {
      await this.#deletePlain(this.#segmentContainer, entry.name);
    }
  }

  /**
   * The entries of `container` whose names start with `prefix`, in name
   * order, page by page; nothing when the container does not exist yet.
   */
  async *#listing(
    container: string,
    prefix = "",
  ): AsyncIterable<ListingEntry> {
    const operation = `list container "${container}"`;
    let marker = "";
    for (;;) {
      const query = new URLSearchParams({
        format: "json",
        limit: String(LISTING_PAGE),
        marker,
        prefix,
      });
      const res = await this.#request(
        operation,
        "GET",
        `/${encodeURIComponent(container)}?${query}`,
        {},
      );
      if (res.status === 404) return await discard(res); // not created yet
      if (!res.ok) throw await this.#error(operation, res);
      const page = JSON.parse(
        await this.#http.readText(res, operation),
      ) as ListingEntry[];
      // a page may be shorter than asked (a proxy's own limit): only an
      // empty page ends the listing
      if (page.length === 0) return;
      yield* page;
      marker = page[page.length - 1].name;
    }
  }

  /** Writes a blob above the segment size as segments plus an SLO manifest. */
  async #putLarge(
    name: string,
    segments: SegmentReader,
    size: number,
  ): Promise<void> {
    const count = Math.ceil(size / this.#segmentSize);
    if (count > MAX_SEGMENTS) {
      throw new BadParamsError(
        `blob too large for segmentSize ${this.#segmentSize} (expected at most ${MAX_SEGMENTS} segments, got ${count})`,
      );
    }
    await this.#ensureContainer(this.#container);
    await this.#ensureContainer(this.#segmentContainer);
    await this.#ensureAcceptedToken();
    const manifest: ManifestSegment[] = [];
    let manifestSent = false;
    try {
      for (let i = 0; i < count; i++) {
        const segment = segmentName(this.#container, name, i);
        const length = Math.min(
          this.#segmentSize,
          size - i * this.#segmentSize,
        );
        const etag = await this.#putObject(
          this.#segmentContainer,
          segment,
          segments,
          length,
          i === count - 1,
        );
        manifest.push({
          path: `/${this.#segmentContainer}/${segment}`,
          etag,
          size_bytes: length,
        });
      }
      manifestSent = true;
      await this.#putManifest(name, manifest);
    } catch (err) {
      // nothing of a failed put may stay: the segments written so far, and
      // the manifest if its answer was lost
      if (manifestSent) await this.remove(name).catch(() => {});
      for (const { path } of manifest) {
        const segmentName = path.slice(this.#segmentContainer.length + 2);
        await this.#deletePlain(this.#segmentContainer, segmentName).catch(
          () => {},
        );
      }
      throw err;
    }
  }

  #putManifest(name: string, manifest: ManifestSegment[]): Promise<void> {
    return this.#requestOk(
      `PUT manifest "${name}"`,
      "PUT",
      `${this.#path(name)}?multipart-manifest=put`,
      {
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(manifest),
      },
    );
  }

  /**
   * Streams the next `length` bytes of `segments` into `container/name`;
   * returns the ETag (MD5) Swift computed. The request is aborted, so that
   * Swift discards the object, as soon as the source fails.
   */
  async #putObject(
    container: string,
    name: string,
    segments: SegmentReader,
    length: number,
    last: boolean,
  ): Promise<string | null> {
    const operation = `PUT object "${name}"`;
    const session = await this.#auth.session();
    const timeoutMs = this.#http.timeoutMs;
    const deadline = this.#http.deadline(operation);
    let failure: unknown;
    let sent = false;
    const body = segments.segment(length, last, {
      onEnd: () => {
        sent = true;
        deadline.start();
      },
      onError: (err) => {
        failure ??= err;
        deadline.abort(err);
      },
      stallMs: timeoutMs,
      onStall: () =>
        deadline.abort(
          new SwiftError(
            operation,
            0,
            `Swift took no bytes of the body for ${timeoutMs} ms (timeoutMs)`,
          ),
        ),
    });
    let res: Response;
    try {
      res = await this.#http.upload(
        `${session.storageURL}${this.#path(name, container)}`,
        {
          method: "PUT",
          headers: {
            "X-Auth-Token": session.token,
            "Content-Type": "application/octet-stream",
          },
          body,
          duplex: "half",
        } as RequestInit,
        deadline,
      );
    } catch (err) {
      // sent in full but no answer: the object may exist; it must not
      if (failure === undefined && sent) {
        await this.#deletePlain(container, name).catch(() => {});
      }
      throw failure ?? err;
    }
    if (failure !== undefined) {
      // the body failed yet Swift answered: never keep what it may have stored
      if (res.ok) await this.#deletePlain(container, name).catch(() => {});
      await discard(res);
      throw failure;
    }
    if (res.status === 401) {
      // The body is a one-shot stream, already consumed: it cannot be sent
      // again without buffering it. Re-authenticate for the next call.
      this.#auth.invalidate(session.token);
      throw await this.#error(
        `${operation} (token refused mid-upload; re-authenticated, retry the put)`,
        res,
      );
    }
    if (!res.ok) {
      if (res.status === 404) this.#containers.delete(container);
      throw await this.#error(operation, res);
    }
    this.#acceptedToken = session.token;
    await discard(res);
    return res.headers.get("Etag");
  }

  #deletePlain(container: string, name: string): Promise<void> {
    return this.#requestOk(
      `DELETE object "${name}"`,
      "DELETE",
      this.#path(name, container),
      {},
      { missingIsDone: true },
    );
  }

  async #size(name: string): Promise<number> {
    const headers = await this.#head(name);
    if (!headers) throw new NotFoundError(`swift object "${name}" not found`);
    return Number(headers.get("Content-Length"));
  }

  /** Whether object `name` (a plain object or a manifest) exists. */
  async #exists(name: string): Promise<boolean> {
    return await this.#head(name) !== undefined;
  }

  /** The headers of object `name`, or `undefined` when it does not exist. */
  async #head(name: string): Promise<Headers | undefined> {
    const operation = `HEAD object "${name}"`;
    const res = await this.#request(operation, "HEAD", this.#path(name), {});
    await discard(res);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new SwiftError(operation, res.status, "");
    return res.headers;
  }

  /** Creates `container` once per backend (PUT is idempotent: 201 or 202). */
  #ensureContainer(container: string): Promise<void> {
    let ready = this.#containers.get(container);
    if (!ready) {
      ready = this.#createContainer(container);
      this.#containers.set(container, ready);
      // a failure is not cached: the next put tries again
      ready.catch(() => this.#containers.delete(container));
    }
    return ready;
  }

  #createContainer(container: string): Promise<void> {
    return this.#requestOk(
      `PUT container "${container}"`,
      "PUT",
      `/${encodeURIComponent(container)}`,
      {},
    );
  }

  /**
   * Makes sure Swift has accepted the current token before a put streams a
   * body, which could not be sent again after a 401. A cheap HEAD (with its
   * own re-authentication and retry) does it, once per token.
   */
  async #ensureAcceptedToken(): Promise<void> {
    const { token } = await this.#auth.session();
    if (token === this.#acceptedToken) return;
    const operation = `HEAD container "${this.#container}"`;
    const res = await this.#request(
      operation,
      "HEAD",
      `/${encodeURIComponent(this.#container)}`,
      {},
    );
    await discard(res);
    if (!res.ok && res.status !== 404) {
      throw new SwiftError(operation, res.status, "");
    }
  }

  /**
   * Sends a request with a body that can be sent again (none, or a string)
   * with the current token; on a 401, re-authenticates once and retries.
   */
  async #request(
    operation: string,
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string },
  ): Promise<Response> {
    // Only requests that can be sent twice to the same effect (GET, HEAD,
    // DELETE) are retried on connection errors and 5xx answers: a PUT's
    // answer may be lost after it took effect (see HttpClient.request).
    for (let attempt = 0;; attempt++) {
      const session = await this.#auth.session();
      const res = await this.#http.request(
        operation,
        `${session.storageURL}${path}`,
        {
          method,
          headers: { ...init.headers, "X-Auth-Token": session.token },
          body: init.body,
        },
      );
      this.#tokens.set(res, session.token);
      if (res.status !== 401) {
        this.#acceptedToken = session.token;
        return res;
      }
      if (attempt > 0) return res;
      await discard(res);
      this.#auth.invalidate(session.token);
    }
  }

  /**
   * Sends a request whose answer has nothing to read (see `#request`) and
   * throws a {@linkcode SwiftError} unless Swift answered 2xx, or 404 when
   * `missingIsDone` (deleting what is already gone is done).
   *
   * The retries are those of `#request`: a refused token is renewed and
   * the request sent once more, whatever the method, as Swift did nothing
   * with it; connection failures and 5xx answers are retried only for
   * GET, HEAD and DELETE, which have the same effect sent twice. A PUT
   * (a manifest, a container) is not: its answer may have been lost after
   * it took effect, and the caller knows better what to do.
   */
  async #requestOk(
    operation: string,
    method: string,
    path: string,
    init: { headers?: Record<string, string>; body?: string },
    { missingIsDone = false } = {},
  ): Promise<void> {
    const res = await this.#request(operation, method, path, init);
    if (!res.ok && !(missingIsDone && res.status === 404)) {
      throw await this.#error(operation, res);
    }
    await discard(res);
  }

  /** The {@linkcode SwiftError} for a failed answer, secrets redacted. */
  #error(operation: string, res: Response): Promise<SwiftError> {
    return this.#http.errorFrom(operation, res);
  }

  /**
   * An answer's body, failing when Swift sends nothing for `timeoutMs`
   * (a server that stalls mid-body must not hold the reader forever).
   */
  #watched(res: Response, operation: string): ReadableStream<Uint8Array> {
    return this.#http.watch(res, operation);
  }

  /** The URL path of object `name` in `container`, each part encoded. */
  #path(name: string, container = this.#container): string {
    const parts = [container, ...name.split("/")];
    return `/${parts.map(encodeURIComponent).join("/")}`;
  }
}

/** The JSON answer of a bulk or SLO delete. */
interface BulkDeleteResult {
  "Response Status"?: string;
  "Number Deleted"?: number;
  Errors?: [string, string][];
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

/** The whole size from `Content-Range: bytes a-b/size` or `bytes *\/size`. */
function totalFromContentRange(res: Response, operation: string): number {
  const header = res.headers.get("Content-Range") ?? "";
  const size = Number(/\/(\d+)\s*$/.exec(header)?.[1]);
  if (!Number.isSafeInteger(size)) {
    throw new SwiftError(
      operation,
      res.status,
      `expected a Content-Range with the size, got "${header}"`,
    );
  }
  return size;
}

/** `text` parsed as JSON, or `undefined` when it is not JSON. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function emptyStream(): ReadableStream<Uint8Array> {
  return new ReadableStream({ start: (controller) => controller.close() });
}

/** Passes on only the bytes at offsets `[start, end)` of the stream. */
function sliceStream(
  start: number,
  end: number,
): TransformStream<Uint8Array, Uint8Array> {
  let offset = 0;
  return new TransformStream({
    transform(chunk, controller) {
      const from = Math.max(start - offset, 0);
      const to = Math.min(end - offset, chunk.byteLength);
      offset += chunk.byteLength;
      if (to > from) controller.enqueue(chunk.subarray(from, to));
    },
  });
}
