/**
 * How S3 failures are told: {@linkcode S3Error}, with the HTTP status and
 * the error code and request id that S3 puts in its XML error body.
 *
 * @module
 */

import { ServiceError } from "../errors.ts";
import type { ServiceHook } from "../request.ts";
import { text } from "./xml.ts";

/** How much of an answer's message an error keeps. */
const MAX_MESSAGE = 300;

/**
 * An S3 request failed: S3 (or a server speaking its API) answered with an
 * error, or did not answer (`status` 0: connection refused or reset, a
 * time limit). `code` and `requestId` come from S3's XML error body
 * (`<Code>NoSuchBucket</Code>`, `<RequestId>…</RequestId>`) when it sent
 * one. The message never holds a secret key, a session token or a
 * signature.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { S3Error } from "@blobstore/blobstore/s3";
 *
 * const err = new S3Error("PUT object \"x\"", 403, "SignatureDoesNotMatch", "tx123", "The request signature we calculated does not match");
 * assert(err.status === 403 && err.code === "SignatureDoesNotMatch");
 * assert(err.message.includes("got HTTP 403 SignatureDoesNotMatch"));
 * ```
 */
export class S3Error extends ServiceError {
  /** S3's error code (`NoSuchKey`, `SlowDown`, …), when it sent one. */
  readonly code?: string;
  /** S3's request id, for its support, when it sent one. */
  readonly requestId?: string;

  /**
   * Creates the error for `operation` (what was attempted), the `status`
   * got (0 for none), and what S3 said: its code, request id and message.
   */
  constructor(
    operation: string,
    status: number,
    code: string | undefined,
    requestId: string | undefined,
    message: string,
    options?: ErrorOptions,
  ) {
    const got = status === 0
      ? ""
      : ` (expected success, got HTTP ${status}${code ? ` ${code}` : ""})`;
    const detail = message.trim().slice(0, MAX_MESSAGE);
    const id = requestId ? ` [request id ${requestId}]` : "";
    super(
      `s3: ${operation} failed${got}${detail ? `: ${detail}` : ""}${id}`,
      status,
      options,
    );
    this.code = code;
    this.requestId = requestId;
  }
}

/**
 * The request layer's hook for S3: an answer's body is S3's XML error
 * (`<Error><Code>…</Code><Message>…</Message><RequestId>…</RequestId>`)
 * or, from some servers and proxies, plain text.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { S3 } from "./error.ts";
 *
 * const xml = "<Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>r1</RequestId></Error>";
 * const err = S3.error("GET object \"x\"", 404, xml);
 * assert(err.code === "NoSuchKey" && err.requestId === "r1" && err.message.includes("gone"));
 * ```
 */
export const S3: ServiceHook<S3Error> = {
  name: "S3",
  error(operation, status, body, options) {
    const code = text(body, "Code");
    const message = code === undefined ? body : text(body, "Message") ?? "";
    return new S3Error(
      operation,
      status,
      code,
      text(body, "RequestId"),
      message,
      options,
    );
  },
};
