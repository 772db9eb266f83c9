/**
 * Stopping a server without cutting the uploads it is receiving.
 *
 * Deno's `server.shutdown()` lets responses finish but fails every request
 * body still being read ("Cannot read body as underlying resource
 * unavailable"): an upload in flight would be cut and answered as if the
 * client had sent a bad body. So the server drains first: new requests are
 * refused with a 503 the client may retry elsewhere or later, the open
 * ones run to their response, and only then is the server shut down.
 *
 * @module
 */

import { jsonResponse } from "../http/errors.ts";

/** How long {@linkcode Drain.drain} waits for open requests by default. */
export const DRAIN_TIMEOUT_MS = 30_000;

/** A request handler, as `Deno.serve` takes it. */
export type RequestHandler<Info> = (
  req: Request,
  info: Info,
) => Response | Promise<Response>;

/**
 * Counts the requests a handler has open and, once asked to drain,
 * refuses new ones.
 */
export class Drain {
  #open = 0;
  #draining = false;
  #idle: (() => void) | undefined;

  /** How many requests have not had their response yet. */
  get open(): number {
    return this.#open;
  }

  /** Whether {@linkcode Drain.drain} was called. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * `handler`, counted: while draining, a request is answered 503
   * `stopping` with `Retry-After: 1` and `Connection: close`, unread.
   */
  wrap<Info>(handler: RequestHandler<Info>): RequestHandler<Info> {
    return async (req, info) => {
      if (this.#draining) return stoppingResponse();
      this.#open++;
      try {
        return await handler(req, info);
      } finally {
        this.#open--;
        if (this.#open === 0) this.#idle?.();
      }
    };
  }

  /**
   * Refuses new requests from now on and resolves once every open one has
   * its response, or after `timeoutMs`, to the number still open.
   */
  drain(timeoutMs = DRAIN_TIMEOUT_MS): Promise<number> {
    this.#draining = true;
    if (this.#open === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.#open), timeoutMs);
      this.#idle = () => {
        clearTimeout(timer);
        resolve(0);
      };
    });
  }
}

function stoppingResponse(): Response {
  return jsonResponse(
    { error: "stopping", message: "the server is stopping; try again" },
    503,
    { "retry-after": "1", connection: "close" },
  );
}
