/**
 * Per-client limits of the HTTP service: how many requests carrying a body
 * (blob and part uploads, the small JSON posts) one client may have in
 * flight at once, and how a client is told apart from another.
 *
 * Every request that sends a body holds a connection and, while the store
 * streams it, a temporary object in the backend; a client that opens many
 * and trickles them (a slow-loris) would hold them all. The limit caps
 * what one client can hold; the body idle timeout (see `bodyStream`)
 * frees what it stops feeding.
 *
 * @module
 */

import { HttpError } from "./errors.ts";

/**
 * What the handler reads of the server's per-request information, its
 * optional second argument: the connection's remote address, as
 * `Deno.serve` passes it in `Deno.ServeHandlerInfo`. Structural, so that
 * no runtime's types are needed to name it; on Node and Bun, call the
 * handler with the request alone (or pass `{ remoteAddr: { hostname } }`).
 *
 * @example
 * ```ts
 * import type { ServeInfo } from "@blobstore/blobstore/http";
 *
 * const info: ServeInfo = { remoteAddr: { hostname: "192.0.2.1" } };
 * ```
 */
export interface ServeInfo {
  /**
   * The connection's remote address: `hostname` for an IP connection,
   * else `transport` tells its kind (`"unix"`, `"vsock"`).
   */
  remoteAddr?: { hostname?: string; transport?: string };
}

/**
 * Tells clients apart for the per-client limits (the handler's default
 * `clientKey`): the remote address of the connection when the server
 * passes it (`Deno.serve` and `deno serve` do), else the first address of
 * `X-Forwarded-For` (a handler called by a proxy layer, which should set
 * it: a client could), else `"unknown"`, one key for all such requests.
 *
 * Behind a reverse proxy every connection comes from the proxy's address:
 * pass a `clientKey` that reads the header the proxy sets.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { remoteAddressKey } from "./limits.ts";
 *
 * const req = new Request("http://x/", { headers: { "x-forwarded-for": "192.0.2.1, 10.0.0.1" } });
 * assert(remoteAddressKey(req) === "192.0.2.1");
 * ```
 */
export function remoteAddressKey(
  req: Request,
  info?: ServeInfo,
): string {
  const addr = info?.remoteAddr;
  const key = addr?.hostname ?? addr?.transport;
  if (key !== undefined) return key;
  const forwarded = req.headers.get("x-forwarded-for")?.split(",")[0].trim();
  return forwarded || "unknown";
}

/**
 * Counts the requests each client has in flight and refuses those beyond
 * `max` with a 429 (`Retry-After: 1`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { ConcurrencyLimiter } from "./limits.ts";
 *
 * const limiter = new ConcurrencyLimiter(1);
 * const release = limiter.acquire("192.0.2.1");
 * assert.throws(() => limiter.acquire("192.0.2.1"), /at most 1/);
 * release();
 * limiter.acquire("192.0.2.1")();
 * assert(limiter.inFlight("192.0.2.1") === 0);
 * ```
 */
export class ConcurrencyLimiter {
  /** The most requests one client may have in flight. */
  readonly max: number;
  #counts = new Map<string, number>();

  /** Creates a limiter allowing `max` requests in flight per key. */
  constructor(max: number) {
    if (!(max >= 1)) {
      throw new RangeError(`limit must be at least 1 (got ${max})`);
    }
    this.max = max;
  }

  /**
   * Takes a slot for `key` and returns the function that gives it back
   * (calling it again does nothing). Throws an `HttpError` 429 when `key`
   * already holds `max`.
   */
  acquire(key: string): () => void {
    const count = this.#counts.get(key) ?? 0;
    if (count >= this.max) {
      throw new HttpError(
        429,
        "too_many_requests",
        `too many uploads in flight from this client (at most ${this.max} at once, got one more)`,
        { "retry-after": "1" },
      );
    }
    this.#counts.set(key, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#counts.get(key) ?? 1) - 1;
      // Dropping idle keys keeps the map as small as the set of active clients.
      if (left <= 0) this.#counts.delete(key);
      else this.#counts.set(key, left);
    };
  }

  /** How many requests `key` has in flight. */
  inFlight(key: string): number {
    return this.#counts.get(key) ?? 0;
  }
}
