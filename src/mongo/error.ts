/**
 * The error a MongoDB operation of `MongoCatalog` or `MongoBackend` fails
 * with when the driver or the server fails unexpectedly (a network error,
 * no server to select, a server error the code does not handle on
 * purpose), and the helpers that wrap driver calls in it.
 *
 * The store's own errors (`NotFoundError`, `IntegrityError` and its
 * subclasses from verification, any `BlobStoreError`) pass through
 * unchanged: only what the driver raised is wrapped.
 *
 * @module
 */

import { BlobStoreError } from "../errors.ts";

/** How much of the driver's message a {@linkcode MongoStoreError} keeps. */
const MAX_DETAIL = 500;

/**
 * A MongoDB operation failed in the driver or on the server. The message
 * names the operation and the collection; `cause` is the driver's error
 * (e.g. a `MongoServerSelectionError`, a `MongoNetworkError`, a
 * `MongoServerError` with its `code`). The message never holds a
 * connection string or credentials.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MongoStoreError } from "@blobstore/blobstore/mongo";
 *
 * const cause = new Error("connection closed");
 * const err = new MongoStoreError("MongoCatalog.insertRef", "x.blobref", cause);
 * assert.strictEqual(
 *   err.message,
 *   'MongoCatalog.insertRef on "x.blobref" failed: Error: connection closed',
 * );
 * assert.strictEqual(err.cause, cause);
 * ```
 */
export class MongoStoreError extends BlobStoreError {
  /** What was attempted, e.g. `MongoCatalog.insertRef`. */
  readonly operation: string;
  /** The collection it was attempted on, e.g. `blobstore.blobref`. */
  readonly collection: string;

  /**
   * Creates the error for `operation` on `collection`, keeping `cause` (the
   * driver's error) as its `cause`.
   */
  constructor(operation: string, collection: string, cause: unknown) {
    super(
      `${operation} on "${collection}" failed: ${describe(cause)}`,
      { cause },
    );
    this.operation = operation;
    this.collection = collection;
  }
}

/**
 * Whether `err` is the server's duplicate-key error (code 11000): a
 * unique `_id` is how concurrent inserts of one key learn that another
 * was first, which callers handle on purpose rather than as a failure.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { isDuplicateKey } from "./error.ts";
 *
 * assert(isDuplicateKey({ code: 11000 }) && !isDuplicateKey(new Error("x")));
 * ```
 */
export function isDuplicateKey(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 11000;
}

/**
 * Returns `err` itself when it is one of the store's own errors (a
 * `BlobStoreError`), else a {@linkcode MongoStoreError} for `operation` on
 * `collection` that keeps it as `cause`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { MongoStoreError, toMongoStoreError } from "./error.ts";
 * import { NotFoundError } from "../errors.ts";
 *
 * const notFound = new NotFoundError("GridFS file \"x\" not found");
 * assert.strictEqual(toMongoStoreError("MongoBackend.get", "b.files", notFound), notFound);
 * const wrapped = toMongoStoreError("MongoBackend.get", "b.files", new Error("boom"));
 * assert(wrapped instanceof MongoStoreError);
 * ```
 */
export function toMongoStoreError(
  operation: string,
  collection: string,
  err: unknown,
): Error {
  if (err instanceof BlobStoreError) return err;
  return new MongoStoreError(operation, collection, err);
}

/**
 * Runs `op` (driver calls), turning what it throws into a
 * {@linkcode MongoStoreError} for `operation` on `collection` (the store's
 * own errors pass through unchanged).
 *
 * @example
 * ```ts
 * import { rejects } from "node:assert";
 * import { MongoStoreError, mongoStep } from "./error.ts";
 *
 * await rejects(
 *   mongoStep("MongoCatalog.getRef", "x.blobref", () => Promise.reject(new Error("down"))),
 *   MongoStoreError,
 * );
 * ```
 */
export async function mongoStep<T>(
  operation: string,
  collection: string,
  op: () => Promise<T>,
): Promise<T> {
  try {
    return await op();
  } catch (err) {
    throw toMongoStoreError(operation, collection, err);
  }
}

/**
 * Yields what `source` (a driver cursor) yields, turning what it throws
 * into a {@linkcode MongoStoreError} as {@linkcode mongoStep} does.
 *
 * @example
 * ```ts
 * import { rejects } from "node:assert";
 * import { MongoStoreError, mongoSteps } from "./error.ts";
 *
 * async function* broken(): AsyncIterable<number> {
 *   yield 1;
 *   throw new Error("cursor killed");
 * }
 * await rejects(
 *   Array.fromAsync(mongoSteps("MongoCatalog.uploads", "x.upload", broken())),
 *   MongoStoreError,
 * );
 * ```
 */
export async function* mongoSteps<T>(
  operation: string,
  collection: string,
  source: AsyncIterable<T>,
): AsyncIterable<T> {
  const iterator = source[Symbol.asyncIterator]();
  try {
    while (true) {
      let next: IteratorResult<T>;
      try {
        next = await iterator.next();
      } catch (err) {
        throw toMongoStoreError(operation, collection, err);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    // Only the consumer stopping early leaves the iterator open; closing it
    // closes the cursor on the server.
    await mongoStep(operation, collection, async () => {
      await iterator.return?.();
    });
  }
}

/**
 * The driver's error as `Name: message`, without anything that looks like
 * a connection string or credentials (driver messages do not usually hold
 * one, but a URI parse error or a server's echo could).
 */
function describe(cause: unknown): string {
  const text = cause instanceof Error
    ? `${cause.name}: ${cause.message}`
    : String(cause);
  return redactConnectionStrings(text).slice(0, MAX_DETAIL);
}

/**
 * Replaces every `mongodb://…` or `mongodb+srv://…` URI with
 * `<connection string>`, and any `user:password@` before a host with
 * `***@`.
 */
function redactConnectionStrings(text: string): string {
  return text
    .replace(/mongodb(?:\+srv)?:\/\/\S*/gi, "<connection string>")
    .replace(/[^\s/@:]+:[^\s/@]*@(?=[^\s@])/g, "***@");
}
