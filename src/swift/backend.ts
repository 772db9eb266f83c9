/**
 * A backend on OpenStack Swift, over nothing but `fetch`: blobs as objects,
 * large ones as Static Large Objects. The requests themselves (auth,
 * deadlines, retries) are the client's business (./client.ts).
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
import { rangeRequest, sliceStream } from "../range.ts";
import { discard, parseJson } from "../request.ts";
import { verified } from "../verify.ts";
import { objectPath, SwiftClient } from "./client.ts";
import { SwiftError } from "./error.ts";
import { checkParams, type SwiftParams } from "./params.ts";
import { emptyStream } from "../source.ts";
import { totalFromContentRange } from "./ranges.ts";
import { SegmentReader } from "./segments.ts";
import { segmentName, segmentPrefix, segmentSets } from "./segment_sets.ts";
import { tempUrl } from "./tempurl.ts";

/** Swift's default `max_manifest_segments`: segments per SLO manifest. */
const MAX_SEGMENTS = 1000;

/** One segment of a Static Large Object manifest. */
interface ManifestSegment {
  path: string;
  etag: string | null;
  size_bytes: number;
}

/** The JSON answer of a bulk or SLO delete. */
interface BulkDeleteResult {
  "Response Status"?: string;
  "Number Deleted"?: number;
  Errors?: [string, string][];
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
 * - With `tempUrlKey`, {@linkcode SwiftBackend.signedUrl} hands out
 *   TempURLs: short-lived GET URLs that Swift serves directly, ranges
 *   included (see {@linkcode SwiftBackend.ensureTempUrlKey}).
 * - Auth is Keystone v3 or v1 (tempauth); the token is cached, renewed
 *   before it expires, and a 401 leads to one re-authentication and retry.
 *   Errors are {@linkcode SwiftError}s (with the HTTP status and Swift's
 *   text; never a secret or a token) or `NotFoundError`.
 *
 * @example Against a Swift with v1 auth
 * ```ts ignore
 * import { SwiftBackend } from "@blobstore/blobstore/swift";
 * import { sha384 } from "@blobstore/blobstore";
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
 *
 * @example With an injected fetch (here a stand-in for an empty Swift)
 * ```ts
 * import assert from "node:assert";
 * import { NotFoundError } from "@blobstore/blobstore";
 * import { SwiftBackend } from "@blobstore/blobstore/swift";
 *
 * const backend = new SwiftBackend({
 *   authURL: "http://127.0.0.1:1/auth/v1.0",
 *   username: "tester",
 *   secret: "testing",
 *   bucket: "blobs",
 *   fetch: (input) => Promise.resolve(
 *     String(input).endsWith("/auth/v1.0")
 *       ? new Response(null, { headers: { "X-Auth-Token": "AUTH_tk1", "X-Storage-Url": "http://127.0.0.1:1/v1/AUTH_t" } })
 *       : new Response(null, { status: 404 }),
 *   ),
 * });
 * await assert.rejects(backend.get("missing"), NotFoundError);
 * for await (const _ of backend.list()) assert.fail("expected no blobs");
 * ```
 */
export class SwiftBackend implements Backend {
  readonly #client: SwiftClient;
  readonly #container: string;
  readonly #segmentContainer: string;
  readonly #segmentSize: number;
  readonly #tempUrlKey: string | undefined;

  /**
   * See {@linkcode Backend.signedUrl}: a TempURL for object `name`, good
   * for a GET (or HEAD, with or without `Range`) for `expiresIn` seconds
   * (a positive integer), signed with `tempUrlKey` (HMAC-SHA-256 unless
   * `tempUrlDigest` says otherwise), with `inline` so that Swift does not
   * add `Content-Disposition: attachment`. It points at the storage URL
   * auth returned (or `endpointURL`), which whoever follows it must be
   * able to reach. Present only when `tempUrlKey` is set; Swift refuses
   * the URL (401) once it expires, or when the account's key is not
   * `tempUrlKey`. The first call authenticates, to learn the storage URL.
   */
  readonly signedUrl?: (
    name: string,
    options: { expiresIn: number },
  ) => Promise<string>;

  /** Creates the backend; nothing is sent until the first call. */
  constructor(params: SwiftParams) {
    const { container, segmentContainer, segmentSize } = checkParams(params);
    this.#container = container;
    this.#segmentContainer = segmentContainer;
    this.#segmentSize = segmentSize;
    this.#client = new SwiftClient(params, {
      fetch: params.fetch,
      timeoutMs: params.timeoutMs,
      retries: params.retries,
      retryDelayMs: params.retryDelayMs,
    });
    const key = this.#tempUrlKey = params.tempUrlKey;
    if (key !== undefined) {
      const digest = params.tempUrlDigest;
      this.signedUrl = async (name, { expiresIn }) => {
        if (!Number.isSafeInteger(expiresIn) || expiresIn < 1) {
          throw new BadParamsError(
            `invalid expiresIn (expected a positive whole number of seconds, got ${expiresIn})`,
          );
        }
        return await tempUrl({
          storageURL: await this.#client.storageURL(),
          container: this.#container,
          name,
          key,
          expires: Math.floor(Date.now() / 1000) + expiresIn,
          digest,
        });
      };
    }
  }

  /**
   * Makes `tempUrlKey` one of the account's TempURL keys, so that Swift
   * accepts the URLs of {@linkcode SwiftBackend.signedUrl}: when neither
   * `X-Account-Meta-Temp-URL-Key` nor `…-Key-2` is that key, it POSTs it
   * to the account as `X-Account-Meta-Temp-URL-Key`, **replacing** the key
   * there (URLs signed with the old one stop working; `…-Key-2` is left
   * alone, for rotations). Only the account's owner may do this (Swift
   * answers 403 to others: a {@linkcode SwiftError}); an operator who
   * keeps keys to themselves sets them instead. Throws `BadParamsError`
   * without a `tempUrlKey`.
   */
  async ensureTempUrlKey(): Promise<void> {
    const key = this.#tempUrlKey;
    if (key === undefined) {
      throw new BadParamsError(
        "no Swift tempUrlKey to set (expected one in the params)",
      );
    }
    const operation = "HEAD account";
    const res = await this.#client.request(operation, "HEAD", "");
    await discard(res);
    if (!res.ok) throw new SwiftError(operation, res.status, "");
    const keys = [
      res.headers.get("X-Account-Meta-Temp-URL-Key"),
      res.headers.get("X-Account-Meta-Temp-URL-Key-2"),
    ];
    if (keys.includes(key)) return;
    await this.#client.requestOk("POST account", "POST", "", {
      headers: { "X-Account-Meta-Temp-URL-Key": key },
    });
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    // the size is not known until Swift answers
    const { start, end, empty, header } = rangeRequest(range);
    if (empty) return { size: await this.#size(name), body: emptyStream() };
    const headers: Record<string, string> = header ? { Range: header } : {};
    const operation = `GET object "${name}"`;
    const res = await this.#client.request(operation, "GET", this.#path(name), {
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
      return { size, body: this.#client.watch(res, operation) };
    }
    if (res.status === 200) {
      const size = Number(res.headers.get("Content-Length"));
      if (!Number.isSafeInteger(size)) {
        await discard(res);
        throw new SwiftError(operation, 200, "expected a Content-Length");
      }
      const body = this.#client.watch(res, operation);
      // a server that ignored the Range header: cut the range out ourselves
      return header !== undefined
        ? { size, body: body.pipeThrough(sliceStream(start, end)) }
        : { size, body };
    }
    throw await this.#client.errorFrom(operation, res);
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    const source = verified(body, size, hash).getReader();
    try {
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new BadParamsError(
          `invalid blob size (expected a non-negative integer, got ${size})`,
        );
      }
      const segments = new SegmentReader(source);
      if (size <= this.#segmentSize) {
        await this.#client.ensureContainer(this.#container);
        await this.#client.ensureAcceptedToken(this.#container);
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
      const res = await this.#client.request(
        operation,
        "DELETE",
        `${this.#path(name)}?multipart-manifest=delete`,
        { headers: { Accept: "application/json" } },
      );
      if (res.status === 404) {
        await discard(res);
        return await this.#removeSegments(name);
      }
      if (!res.ok) throw await this.#client.errorFrom(operation, res);
      const result = parseJson(
        await this.#client.readText(res, operation),
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
        this.#client.refused(res);
        continue;
      }
      throw this.#client.error(
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
    for await (const entry of this.#client.listing(this.#container)) {
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
    const listing = this.#client.listing(
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
    const listing = this.#client.listing(this.#segmentContainer, prefix);
    for await (const entry of listing) {
      await this.#deletePlain(this.#segmentContainer, entry.name);
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
    await this.#client.ensureContainer(this.#container);
    await this.#client.ensureContainer(this.#segmentContainer);
    await this.#client.ensureAcceptedToken(this.#container);
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
    return this.#client.requestOk(
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
    const timeoutMs = this.#client.timeoutMs;
    let failure: unknown;
    let sent = false;
    let res: Response;
    try {
      res = await this.#client.upload(
        operation,
        container,
        name,
        (deadline) =>
          segments.segment(length, last, {
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
          }),
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
    if (!res.ok) {
      throw await this.#client.uploadError(operation, container, res);
    }
    await discard(res);
    return res.headers.get("Etag");
  }

  #deletePlain(container: string, name: string): Promise<void> {
    return this.#client.requestOk(
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
    const res = await this.#client.request(operation, "HEAD", this.#path(name));
    await discard(res);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new SwiftError(operation, res.status, "");
    return res.headers;
  }

  /** The URL path of object `name` in `container` (default: the blobs'). */
  #path(name: string, container = this.#container): string {
    return objectPath(container, name);
  }
}
