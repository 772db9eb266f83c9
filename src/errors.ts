/**
 * Errors thrown by the store, its catalogs and its backends.
 *
 * Every error the store throws on purpose is a {@linkcode BlobStoreError};
 * callers tell the kinds apart with `instanceof`, never by message.
 *
 * @module
 */

/**
 * The base class of every error the blob store throws on purpose.
 *
 * @example Telling the store's errors apart from others
 * ```ts
 * import assert from "node:assert";
 * import { BlobStoreError, NotFoundError } from "@blobstore/blobstore";
 *
 * const err: unknown = new NotFoundError("blob not found");
 * assert(err instanceof BlobStoreError);
 * ```
 */
export class BlobStoreError extends Error {
  /** Creates the error with a message that says what was expected and what was got. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A blob, an upload or a backend object does not exist.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { NotFoundError } from "@blobstore/blobstore";
 *
 * const err = new NotFoundError("upload \"abc\" not found");
 * assert(err.name === "NotFoundError");
 * ```
 */
export class NotFoundError extends BlobStoreError {}

/**
 * An argument is invalid in itself (an implausible hash, a part number or
 * size out of range) or against the parts already declared for an upload.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { BadParamsError } from "@blobstore/blobstore";
 *
 * const err = new BadParamsError("part 0 too small (need at least 100 bytes, got 26)");
 * assert(err.message.includes("too small"));
 * ```
 */
export class BadParamsError extends BlobStoreError {}

/**
 * A valid request clashes with the current state of an upload: a part
 * re-sent with another hash, a part added to a finished upload, an owner
 * already set to someone else.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ConflictError } from "@blobstore/blobstore";
 *
 * const err = new ConflictError("upload already finished");
 * assert(err instanceof ConflictError);
 * ```
 */
export class ConflictError extends BlobStoreError {}

/**
 * Content does not match what it was declared to be. Nothing is stored when
 * this is thrown.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { HashMismatchError, IntegrityError } from "@blobstore/blobstore";
 *
 * const err = new HashMismatchError("a".repeat(96), "b".repeat(96));
 * assert(err instanceof IntegrityError);
 * ```
 */
export class IntegrityError extends BlobStoreError {}

/**
 * The content's SHA-384 digest is not the declared hash.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { HashMismatchError } from "@blobstore/blobstore";
 *
 * const err = new HashMismatchError("a".repeat(96), "b".repeat(96));
 * assert(err.expected === "a".repeat(96) && err.actual === "b".repeat(96));
 * ```
 */
export class HashMismatchError extends IntegrityError {
  /** The hash the caller declared. */
  readonly expected: string;
  /** The hash of the bytes actually received. */
  readonly actual: string;
  /** Creates the error from the declared and the computed hash. */
  constructor(expected: string, actual: string) {
    super(`hash mismatch (expected ${expected}, got ${actual})`);
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * The content is shorter or longer than its declared size. When the content
 * is too long, `actual` is the count at which reading stopped, which may be
 * less than the whole content.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { SizeMismatchError } from "@blobstore/blobstore";
 *
 * const err = new SizeMismatchError(10, 11);
 * assert(err.message === "size mismatch (expected 10 bytes, got at least 11)");
 * ```
 */
export class SizeMismatchError extends IntegrityError {
  /** The size the caller declared. */
  readonly expected: number;
  /** The number of bytes received when the mismatch was found. */
  readonly actual: number;
  /** Creates the error from the declared size and the count received. */
  constructor(expected: number, actual: number) {
    super(
      `size mismatch (expected ${expected} bytes, got ${
        actual > expected ? "at least " : ""
      }${actual})`,
    );
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * Bytes read back from storage are not what was stored: an object shorter
 * or longer than its recorded size, or a part whose content no longer
 * hashes to its name. Unlike {@linkcode IntegrityError}, this is never the
 * caller's fault: it means storage lost or changed data. The corrupt bytes
 * are not handed out as good (a read stream errors with this rather than
 * ending), and nothing is recorded from them.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { BlobStoreError, CorruptBlobError, IntegrityError } from "@blobstore/blobstore";
 *
 * const err = new CorruptBlobError("part 1 (blob aa…) is 9 bytes in storage (expected 10)");
 * assert(err instanceof BlobStoreError && !(err instanceof IntegrityError));
 * ```
 */
export class CorruptBlobError extends BlobStoreError {}

/**
 * The operation lost a race with a concurrent change and did nothing that
 * needs undoing; running it again is safe and will most likely succeed.
 * Thrown, for instance, by a put of an existing blob whose reference a
 * garbage collection removed while the put was verifying its bytes: the
 * bytes were read and checked but not stored, so the put cannot promise
 * that the blob exists. Over HTTP it is a 503 with `Retry-After`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { BlobStoreError, RetryableError } from "@blobstore/blobstore";
 *
 * const err = new RetryableError("blob removed by a concurrent gc while its put was verifying; put it again");
 * assert(err instanceof BlobStoreError && err.name === "RetryableError");
 * ```
 */
export class RetryableError extends BlobStoreError {}

/**
 * A request to a storage service over HTTP (Swift, S3) failed: the service
 * answered with an unexpected status, or no answer came (a network error,
 * a timeout). `status` tells which: the HTTP status, or 0 when no answer
 * came. Each service throws its own subclass (`SwiftError` for Swift), so
 * callers may catch the failures of one service or of all; the message
 * never contains a password or a token.
 *
 * @example Telling a refused request from an unreachable service
 * ```ts
 * import assert from "node:assert";
 * import { BlobStoreError, ServiceError } from "@blobstore/blobstore";
 * import { SwiftError } from "@blobstore/blobstore/swift";
 *
 * const refused: unknown = new SwiftError("GET object \"x\"", 403, "Forbidden");
 * assert(refused instanceof ServiceError && refused.status === 403);
 * const unreachable = new ServiceError("s3: GET object \"x\" failed: connection refused", 0);
 * assert(unreachable instanceof BlobStoreError && unreachable.status === 0);
 * ```
 */
export class ServiceError extends BlobStoreError {
  /** The HTTP status the service answered with, or 0 when no answer came. */
  readonly status: number;

  /** Creates the error with its `message` and the `status` got (0 for none). */
  constructor(message: string, status: number, options?: ErrorOptions) {
    super(message, options);
    this.status = status;
  }
}
