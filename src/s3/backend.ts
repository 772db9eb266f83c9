/**
 * `S3Backend`: blobs as objects in an S3 bucket (AWS S3 or any server
 * speaking its API), over `fetch`, signed with SigV4.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type {
  Backend,
  BackendObject,
  ByteRange,
  OpenedBlob,
} from "../backend.ts";
import { NotFoundError } from "../errors.ts";
import { rangeRequest, sizeFromContentRange, sliceStream } from "../range.ts";
import { discard } from "../request.ts";
import { emptyStream } from "../source.ts";
import { verified } from "../verify.ts";
import { S3Client, type S3Request } from "./client.ts";
import type { S3Error } from "./error.ts";
import { checkParams, MAX_PARTS, type S3Params } from "./params.ts";
import { PartReader, partSizes } from "./parts.ts";
import { elements, escapeXml, text } from "./xml.ts";

/** How many keys one `DeleteObjects` request may name (S3's limit). */
const DELETE_BATCH = 1000;

/**
 * A {@linkcode Backend} keeping each blob as one object of an S3 bucket,
 * under `prefix` + its name.
 *
 * - **Puts stream** with their `Content-Length` (S3 refuses chunked
 *   uploads) while SHA-384 and size are verified; nothing is buffered
 *   beyond one part (and not even that in the default `"stream"` mode). A
 *   blob above `partSize` goes up as an S3 multipart upload, parts sent one
 *   after another. A put whose content does not verify, or whose source
 *   fails, never becomes visible: its last bytes are held back until the
 *   source has ended verified, so a single PUT is cut short and dropped by
 *   S3, and a multipart upload is aborted (`AbortMultipartUpload`).
 * - **Reads** use `Range`; **`removeMany`** uses `DeleteObjects`, 1,000 keys
 *   a request; **`list`** uses `ListObjectsV2` and also reports multipart
 *   uploads left incomplete by a killed process (size 0, at the time they
 *   were started), which `remove` aborts, so `Store.sweepOrphans` clears
 *   them past its grace period.
 * - **`presignGet`** (and **`signedUrl`**, the `Backend` capability that
 *   `createHandler`'s `redirect` uses) hands out a short-lived GET URL
 *   (query-string SigV4) that the storage serves directly, ranges included.
 * - Failures are {@linkcode S3Error}s (status, S3's code and request id;
 *   never a secret or a signature) or `NotFoundError`. Idempotent requests
 *   (GET, HEAD, DELETE, listings) are retried with backoff on connection
 *   failures and 5xx answers; puts never are (a consumed stream cannot be
 *   sent again; retry the `Store.put`, which is safe).
 *
 * @example Against a local S3-compatible server
 * ```ts ignore
 * import { MemoryCatalog, Store } from "@blobstore/blobstore";
 * import { S3Backend } from "@blobstore/blobstore/s3";
 *
 * const backend = new S3Backend({
 *   endpoint: "http://127.0.0.1:9000",
 *   region: "us-east-1",
 *   bucket: "blobs", // created on first use
 *   accessKeyId: Deno.env.get("AWS_ACCESS_KEY_ID")!,
 *   secretAccessKey: Deno.env.get("AWS_SECRET_ACCESS_KEY")!,
 * });
 * const store = new Store({ catalog: new MemoryCatalog(), backend });
 * const url = await backend.presignGet("some-object-name", { expiresIn: 300 });
 * ```
 */
export class S3Backend implements Backend {
  readonly #client: S3Client;
  readonly #partSize: number;
  readonly #mode: "stream" | "buffer";
  readonly #region: string;
  #bucket: Promise<void> | undefined;

  /** Creates the backend; nothing is sent until the first call. */
  constructor(params: S3Params) {
    this.#partSize = checkParams(params);
    this.#client = new S3Client(params);
    this.#region = params.region;
    this.#mode = params.upload ??
      (params.fetch === undefined && hasNodeHttp() ? "stream" : "buffer");
  }

  /** The size of each part of a multipart upload, in bytes. */
  get partSize(): number {
    return this.#partSize;
  }

  /** See {@linkcode Backend.get}. */
  async get(name: string, range?: ByteRange): Promise<OpenedBlob> {
    // the size is not known until S3 answers
    const { start, end, empty, header } = rangeRequest(range);
    if (empty) return { size: await this.#size(name), body: emptyStream() };
    const headers: Record<string, string> = header ? { range: header } : {};
    const operation = `GET object "${name}"`;
    const res = await this.#send(operation, {
      method: "GET",
      key: name,
      headers,
    });
    if (res.status === 404) {
      throw await this.#notFound(operation, res, name);
    }
    if (res.status === 416) {
      // the range starts at or past the end: nothing to read
      await discard(res);
      return { size: await this.#size(name), body: emptyStream() };
    }
    const size = res.status === 206
      ? sizeFromContentRange(res.headers.get("content-range"))
      : res.status === 200
      ? Number(res.headers.get("content-length"))
      : undefined;
    if (!res.ok) throw await this.#client.errorFrom(operation, res);
    if (size === undefined || !Number.isSafeInteger(size)) {
      await discard(res);
      throw this.#client.error(
        operation,
        res.status,
        "expected the object's size in Content-Length or Content-Range",
      );
    }
    const body = this.#client.watch(res, operation);
    // a server that ignored the Range header: cut the range out ourselves
    return res.status === 200 && header !== undefined
      ? { size, body: body.pipeThrough(sliceStream(start, end)) }
      : { size, body };
  }

  /** See {@linkcode Backend.put}. */
  async put(
    name: string,
    body: ReadableStream<Uint8Array>,
    size: number,
    hash: string,
  ): Promise<void> {
    await this.#ensureBucket();
    const sizes = partSizes(size, this.#partSize);
    if (sizes.length > MAX_PARTS) {
      await body.cancel().catch(() => {});
      throw this.#client.error(
        `PUT object "${name}"`,
        0,
        `a blob of ${size} bytes needs ${sizes.length} parts of ${this.#partSize} bytes; S3 allows ${MAX_PARTS} (raise partSize)`,
      );
    }
    const parts = new PartReader(
      verified(body, size, hash),
    );
    try {
      if (sizes.length === 1) {
        await this.#putPart(
          `PUT object "${name}"`,
          {
            method: "PUT",
            key: name,
            headers: { "content-type": "application/octet-stream" },
          },
          parts.next(size, { last: true }),
          size,
        );
      } else {
        await this.#putMultipart(name, parts, sizes);
      }
    } catch (err) {
      await parts.cancel(err);
      throw err;
    }
  }

  /** See {@linkcode Backend.remove}. Also aborts the incomplete uploads of `name`. */
  async remove(name: string): Promise<void> {
    const operation = `DELETE object "${name}"`;
    const res = await this.#send(operation, { method: "DELETE", key: name });
    if (!res.ok && res.status !== 404) {
      throw await this.#client.errorFrom(operation, res);
    }
    await discard(res);
    for await (const upload of this.#uploads(name)) {
      if (upload.name === name) await this.#abort(name, upload.uploadId);
    }
  }

  /** See {@linkcode Backend.removeMany}: `DeleteObjects`, 1,000 keys a request. */
  async removeMany(names: readonly string[]): Promise<void> {
    for (let i = 0; i < names.length; i += DELETE_BATCH) {
      await this.#deleteObjects(names.slice(i, i + DELETE_BATCH));
    }
  }

  /**
   * See {@linkcode Backend.list}: every object under the prefix, then every
   * multipart upload left incomplete (size 0, `modified` when it started),
   * which {@linkcode S3Backend.remove} aborts.
   */
  async *list(): AsyncIterable<BackendObject> {
    let token: string | undefined;
    do {
      const query: Record<string, string> = {
        "list-type": "2",
        prefix: this.#client.prefix,
      };
      if (token !== undefined) query["continuation-token"] = token;
      const xml = await this.#xml("list objects", { method: "GET", query });
      for (const entry of elements(xml, "Contents")) {
        const key = text(entry, "Key") ?? "";
        yield {
          name: key.slice(this.#client.prefix.length),
          size: Number(text(entry, "Size")),
          modified: new Date(text(entry, "LastModified") ?? 0),
        };
      }
      token = text(xml, "IsTruncated") === "true"
        ? text(xml, "NextContinuationToken")
        : undefined;
    } while (token !== undefined);
    for await (const upload of this.#uploads()) {
      yield { name: upload.name, size: 0, modified: upload.started };
    }
  }

  /**
   * A URL that lets anyone GET object `name` for `expiresIn` seconds (1 to
   * 604,800), straight from the storage; ranges work with a `Range` header.
   * With `range`, the URL is signed for that `Range` header only, which the
   * client must then send as given.
   */
  async presignGet(
    name: string,
    options: { expiresIn: number; range?: string },
  ): Promise<string> {
    const url = await this.#client.presign(
      name,
      options.expiresIn,
      options.range === undefined ? undefined : { range: options.range },
    );
    return url.href;
  }

  /**
   * See {@linkcode Backend.signedUrl}: {@linkcode S3Backend.presignGet}
   * without a range, for `expiresIn` seconds (1 to 604,800). S3 refuses
   * the URL (403) once it expires.
   */
  signedUrl(name: string, options: { expiresIn: number }): Promise<string> {
    return this.presignGet(name, { expiresIn: options.expiresIn });
  }

  /** Uploads `sizes.length` parts from `parts`, then completes; aborts on failure. */
  async #putMultipart(
    name: string,
    parts: PartReader,
    sizes: number[],
  ): Promise<void> {
    const uploadId = await this.#createUpload(name);
    try {
      const etags: string[] = [];
      for (let i = 0; i < sizes.length; i++) {
        const operation = `PUT part ${i + 1} of object "${name}"`;
        etags.push(
          await this.#putPart(
            operation,
            {
              method: "PUT",
              key: name,
              query: { partNumber: String(i + 1), uploadId },
            },
            parts.next(sizes[i], { last: i === sizes.length - 1 }),
            sizes[i],
          ),
        );
      }
      await this.#complete(name, uploadId, etags);
    } catch (err) {
      // Nothing of it may become visible; a failed abort leaves an
      // incomplete upload that list() reports and the sweep removes.
      await this.#abort(name, uploadId).catch(() => {});
      throw err;
    }
  }

  /**
   * PUTs `size` bytes of `body` with `request` (an object or a part) and
   * returns the answer's ETag. Streamed with its Content-Length, or held in
   * memory and sent with fetch in `"buffer"` mode.
   */
  async #putPart(
    operation: string,
    request: S3Request,
    body: ReadableStream<Uint8Array>,
    size: number,
  ): Promise<string> {
    if (this.#mode === "buffer") {
      const bytes = new Uint8Array(size);
      let offset = 0;
      for await (const chunk of body) {
        bytes.set(chunk, offset);
        offset += chunk.byteLength;
      }
      const res = await this.#client.send(operation, {
        ...request,
        body: bytes,
      });
      if (!res.ok) throw await this.#client.errorFrom(operation, res);
      await discard(res);
      return res.headers.get("etag") ?? "";
    }
    const answer = await this.#client.sendStream(
      operation,
      request,
      body,
      size,
    );
    if (answer.status < 200 || answer.status > 299) {
      throw this.#client.error(operation, answer.status, answer.text);
    }
    return answer.headers.get("etag") ?? "";
  }

  async #createUpload(name: string): Promise<string> {
    const operation = `create multipart upload of "${name}"`;
    const xml = await this.#xml(operation, {
      method: "POST",
      key: name,
      query: { uploads: "" },
      headers: { "content-type": "application/octet-stream" },
    });
    const uploadId = text(xml, "UploadId");
    if (!uploadId) {
      throw this.#client.error(operation, 200, "expected an UploadId");
    }
    return uploadId;
  }

  async #complete(
    name: string,
    uploadId: string,
    etags: string[],
  ): Promise<void> {
    const operation = `complete multipart upload of "${name}"`;
    const body = `<CompleteMultipartUpload>${
      etags.map((etag, i) =>
        `<Part><PartNumber>${i + 1}</PartNumber><ETag>${
          escapeXml(etag)
        }</ETag></Part>`
      ).join("")
    }</CompleteMultipartUpload>`;
    // S3 may answer 200 and put the error in the body, after a long wait.
    const xml = await this.#xml(operation, {
      method: "POST",
      key: name,
      query: { uploadId },
      headers: { "content-type": "application/xml" },
      body,
    });
    if (elements(xml, "Error").length > 0) {
      throw this.#client.error(operation, 200, xml);
    }
  }

  async #abort(name: string, uploadId: string): Promise<void> {
    const operation = `abort multipart upload of "${name}"`;
    const res = await this.#send(operation, {
      method: "DELETE",
      key: name,
      query: { uploadId },
    });
    if (!res.ok && res.status !== 404) {
      throw await this.#client.errorFrom(operation, res);
    }
    await discard(res);
  }

  /**
   * The incomplete multipart uploads under the prefix (with `name`, only
   * those whose key starts with it), across pages.
   */
  async *#uploads(
    name = "",
  ): AsyncIterable<{ name: string; uploadId: string; started: Date }> {
    let markers: Record<string, string> = {};
    for (;;) {
      const xml = await this.#xml("list multipart uploads", {
        method: "GET",
        query: { uploads: "", prefix: this.#client.prefix + name, ...markers },
      });
      for (const upload of elements(xml, "Upload")) {
        yield {
          name: (text(upload, "Key") ?? "").slice(this.#client.prefix.length),
          uploadId: text(upload, "UploadId") ?? "",
          started: new Date(text(upload, "Initiated") ?? 0),
        };
      }
      if (text(xml, "IsTruncated") !== "true") return;
      markers = {
        "key-marker": text(xml, "NextKeyMarker") ?? "",
        "upload-id-marker": text(xml, "NextUploadIdMarker") ?? "",
      };
    }
  }

  async #deleteObjects(names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const operation = `delete ${names.length} objects`;
    const body = `<Delete><Quiet>true</Quiet>${
      names.map((name) =>
        `<Object><Key>${escapeXml(this.#client.prefix + name)}</Key></Object>`
      ).join("")
    }</Delete>`;
    const xml = await this.#xml(operation, {
      method: "POST",
      query: { delete: "" },
      headers: {
        "content-type": "application/xml",
        // required by S3 (and Swift's s3api) for DeleteObjects
        "content-md5": createHash("md5").update(body).digest("base64"),
      },
      body,
      idempotent: true, // deleting twice is deleting
    });
    const failed = elements(xml, "Error").filter((error) =>
      text(error, "Code") !== "NoSuchKey"
    );
    if (failed.length > 0) {
      throw this.#client.error(
        operation,
        200,
        `${failed.length} not deleted, first: ${failed[0]}`,
      );
    }
  }

  /** The size of object `name`, from a HEAD. */
  async #size(name: string): Promise<number> {
    const operation = `HEAD object "${name}"`;
    const res = await this.#send(operation, { method: "HEAD", key: name });
    if (res.status === 404) throw await this.#notFound(operation, res, name);
    if (!res.ok) throw await this.#client.errorFrom(operation, res);
    await discard(res);
    const size = Number(res.headers.get("content-length"));
    if (!Number.isSafeInteger(size)) {
      throw this.#client.error(
        operation,
        res.status,
        "expected a Content-Length",
      );
    }
    return size;
  }

  /** Sends a request whose answer is XML, and returns the XML. */
  async #xml(operation: string, request: S3Request): Promise<string> {
    const res = await this.#send(operation, request);
    if (!res.ok) throw await this.#client.errorFrom(operation, res);
    return await this.#client.readText(res, operation);
  }

  /**
   * Sends `request`, after creating the bucket once if a request finds it
   * missing (`NoSuchBucket`).
   */
  async #send(operation: string, request: S3Request): Promise<Response> {
    await this.#ensureBucket();
    return await this.#client.send(operation, request);
  }

  /** A 404: the object's `NotFoundError`, or the bucket's S3Error. */
  async #notFound(
    operation: string,
    res: Response,
    name: string,
  ): Promise<NotFoundError | S3Error> {
    const err = await this.#client.errorFrom(operation, res);
    if (err.code === "NoSuchBucket") {
      this.#bucket = undefined; // deleted behind our back: create it again
      return err;
    }
    return new NotFoundError(`s3 object "${name}" not found`);
  }

  /** Creates the bucket unless it exists, once per backend (again after a failure). */
  #ensureBucket(): Promise<void> {
    this.#bucket ??= this.#createBucket().catch((err) => {
      this.#bucket = undefined;
      throw err;
    });
    return this.#bucket;
  }

  async #createBucket(): Promise<void> {
    // A listing rather than a HEAD: a refusal then comes with S3's XML,
    // whose code says why (SignatureDoesNotMatch, AccessDenied, …).
    const operation = `list bucket "${this.#client.bucket}"`;
    const probe = await this.#client.send(operation, {
      method: "GET",
      query: { "list-type": "2", "max-keys": "1" },
    });
    if (probe.ok) return await discard(probe);
    const missing = await this.#client.errorFrom(operation, probe);
    if (missing.code !== "NoSuchBucket") throw missing;
    const create = `PUT bucket "${this.#client.bucket}"`;
    const res = await this.#client.send(create, {
      method: "PUT",
      body: this.#region === "us-east-1"
        ? ""
        : `<CreateBucketConfiguration><LocationConstraint>${
          escapeXml(this.#region)
        }</LocationConstraint></CreateBucketConfiguration>`,
      idempotent: true,
    });
    if (res.ok) return await discard(res);
    const err = await this.#client.errorFrom(create, res);
    if (err.code !== "BucketAlreadyOwnedByYou") throw err;
  }
}

/** Whether the runtime has `node:http` (Deno, Node, Bun; not every edge runtime). */
function hasNodeHttp(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: object } };
  return g.Deno !== undefined || g.process?.versions !== undefined;
}
