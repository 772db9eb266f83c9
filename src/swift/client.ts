/**
 * The client of a Swift account's containers: authenticated requests
 * through the request layer (deadlines, retries, a 401 answered by one
 * re-authentication), containers created once, and listings read page by
 * page. What the requests mean for blobs is the backend's business.
 *
 * @module
 */

import {
  type Deadline,
  discard,
  type FetchFn,
  HttpClient,
} from "../request.ts";
import { SwiftAuth, type SwiftCredentials } from "./auth.ts";
import { SWIFT, SwiftError } from "./error.ts";
import type { ListingEntry } from "./segment_sets.ts";

/** Objects per listing page (Swift's default `container_listing_limit`). */
const LISTING_PAGE = 10_000;

/**
 * How a {@linkcode SwiftClient} sends: see `SwiftParams` for each field.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SwiftClientOptions } from "./client.ts";
 *
 * const options: SwiftClientOptions = { timeoutMs: 30_000, retries: 0 };
 * assert(options.retries === 0);
 * ```
 */
export interface SwiftClientOptions {
  /** The `fetch` to call (default: the global one). */
  fetch?: FetchFn;
  /** How long to wait for Swift or Keystone, in ms (default 60 000). */
  timeoutMs?: number;
  /** Retries of an idempotent request (default 3). */
  retries?: number;
  /** The backoff before the first retry, in ms (default 200). */
  retryDelayMs?: number;
}

/** What a request with a body that can be sent again carries. */
interface Replayable {
  headers?: Record<string, string>;
  body?: string;
}

/**
 * The URL path of object `name` in `container`, each part encoded (a `/`
 * in the name stays a separator, as Swift expects for pseudo-folders).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { objectPath } from "./client.ts";
 *
 * assert(objectPath("blobs", "a b/c") === "/blobs/a%20b/c");
 * ```
 */
export function objectPath(container: string, name: string): string {
  const parts = [container, ...name.split("/")];
  return `/${parts.map(encodeURIComponent).join("/")}`;
}

/**
 * The URL path of `container`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { containerPath } from "./client.ts";
 *
 * assert(containerPath("my blobs") === "/my%20blobs");
 * ```
 */
export function containerPath(container: string): string {
  return `/${encodeURIComponent(container)}`;
}

/**
 * Sends authenticated requests to one Swift account. Every request carries
 * the current token; a 401 drops it, and a request whose body can be sent
 * again is sent once more with a new one. Errors are
 * {@linkcode SwiftError}s, never showing a secret or a token.
 *
 * @example With a stand-in for Swift
 * ```ts
 * import assert from "node:assert";
 * import { SwiftClient } from "./client.ts";
 *
 * const client = new SwiftClient({
 *   authURL: "http://127.0.0.1:1/auth/v1.0",
 *   username: "tester",
 *   secret: "testing",
 * }, {
 *   fetch: (input) => Promise.resolve(
 *     String(input).endsWith("/auth/v1.0")
 *       ? new Response(null, { headers: { "X-Auth-Token": "AUTH_tk1", "X-Storage-Url": "http://127.0.0.1:1/v1/AUTH_t" } })
 *       : new Response(null, { status: 404 }), // no such container
 *   ),
 * });
 * const names = [];
 * for await (const entry of client.listing("blobs")) names.push(entry.name);
 * assert(names.length === 0);
 * ```
 */
export class SwiftClient {
  readonly #auth: SwiftAuth;
  readonly #http: HttpClient<SwiftError>;
  /** Containers known to exist (created on first put), one PUT each. */
  readonly #containers = new Map<string, Promise<void>>();
  /** The token each response was got with (to drop the right one on a 401). */
  readonly #tokens = new WeakMap<Response, string>();
  /** The last token Swift accepted (see ensureAcceptedToken). */
  #acceptedToken: string | undefined;

  /** Creates the client; nothing is sent until the first request. */
  constructor(credentials: SwiftCredentials, options: SwiftClientOptions = {}) {
    this.#auth = new SwiftAuth(credentials, options);
    this.#http = new HttpClient(SWIFT, {
      ...options,
      secrets: () => this.#auth.secrets,
    });
  }

  /** How long to wait for Swift, in ms. */
  get timeoutMs(): number {
    return this.#http.timeoutMs;
  }

  /**
   * The account's storage URL (authenticating first when no session is
   * fresh), without a trailing slash: where TempURLs point.
   */
  async storageURL(): Promise<string> {
    return (await this.#auth.session()).storageURL;
  }

  /**
   * Sends a request whose body can be sent again (none, or a string) with
   * the current token; on a 401, re-authenticates once and sends it again,
   * whatever the method, as Swift did nothing with it. Connection failures
   * and 5xx answers are retried only for GET, HEAD and DELETE (see
   * {@linkcode HttpClient.request}). The answer is returned whatever its
   * status.
   */
  async request(
    operation: string,
    method: string,
    path: string,
    init: Replayable = {},
  ): Promise<Response> {
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
      this.#answered(res, session.token);
      if (res.status !== 401 || attempt > 0) return res;
      await discard(res);
      this.#auth.invalidate(session.token);
    }
  }

  /**
   * Sends a request whose answer has nothing to read (see
   * {@linkcode SwiftClient.request}) and throws a {@linkcode SwiftError}
   * unless Swift answered 2xx, or 404 when `missingIsDone` (deleting what
   * is already gone is done).
   */
  async requestOk(
    operation: string,
    method: string,
    path: string,
    init: Replayable = {},
    { missingIsDone = false } = {},
  ): Promise<void> {
    const res = await this.request(operation, method, path, init);
    if (!res.ok && !(missingIsDone && res.status === 404)) {
      throw await this.errorFrom(operation, res);
    }
    await discard(res);
  }

  /**
   * PUTs object `name` of `container` with a streamed body, built by `body`
   * around the request's deadline (which the body starts once sent in
   * full, or aborts when it fails). Sent once, with the current token: a
   * consumed stream cannot be sent again, not even after a 401. Returns
   * the answer whatever its status; {@linkcode SwiftClient.uploadError}
   * makes the error of a failed one.
   */
  async upload(
    operation: string,
    container: string,
    name: string,
    body: (deadline: Deadline) => ReadableStream<Uint8Array>,
  ): Promise<Response> {
    const session = await this.#auth.session();
    const deadline = this.#http.deadline(operation);
    const res = await this.#http.upload(
      `${session.storageURL}${objectPath(container, name)}`,
      {
        method: "PUT",
        headers: {
          "X-Auth-Token": session.token,
          "Content-Type": "application/octet-stream",
        },
        body: body(deadline),
        duplex: "half",
      } as RequestInit,
      deadline,
    );
    this.#answered(res, session.token);
    return res;
  }

  /**
   * The error for a failed {@linkcode SwiftClient.upload} into
   * `container`. A refused token is dropped so that the next call
   * re-authenticates (the put itself cannot be sent again without
   * buffering its body); a missing container is created again by the next
   * {@linkcode SwiftClient.ensureContainer} (deleted behind our back).
   */
  uploadError(
    operation: string,
    container: string,
    res: Response,
  ): Promise<SwiftError> {
    if (res.status === 401) {
      this.refused(res);
      return this.errorFrom(
        `${operation} (token refused mid-upload; re-authenticated, retry the put)`,
        res,
      );
    }
    if (res.status === 404) this.#containers.delete(container);
    return this.errorFrom(operation, res);
  }

  /**
   * Drops the token `res` was got with, after Swift said inside the answer
   * that it refused it (as the SLO middleware does, with a 200).
   */
  refused(res: Response): void {
    this.#auth.invalidate(this.#tokens.get(res) ?? "");
  }

  /** The {@linkcode SwiftError} for a failed answer, with its text, secrets redacted. */
  errorFrom(operation: string, res: Response): Promise<SwiftError> {
    return this.#http.errorFrom(operation, res);
  }

  /** The {@linkcode SwiftError} for `operation`, `text` cleared of secrets. */
  error(operation: string, status: number, text: string): SwiftError {
    return this.#http.error(operation, status, text);
  }

  /** A small answer's body as text, within `timeoutMs`. */
  readText(res: Response, operation: string): Promise<string> {
    return this.#http.readText(res, operation);
  }

  /**
   * An answer's body, failing when Swift sends nothing for `timeoutMs`
   * (a server that stalls mid-body must not hold the reader forever).
   */
  watch(res: Response, operation: string): ReadableStream<Uint8Array> {
    return this.#http.watch(res, operation);
  }

  /** Creates `container` once per client (PUT is idempotent: 201 or 202). */
  ensureContainer(container: string): Promise<void> {
    let ready = this.#containers.get(container);
    if (!ready) {
      ready = this.requestOk(
        `PUT container "${container}"`,
        "PUT",
        containerPath(container),
      );
      this.#containers.set(container, ready);
      // a failure is not cached: the next put tries again
      ready.catch(() => this.#containers.delete(container));
    }
    return ready;
  }

  /**
   * Makes sure Swift has accepted the current token before a put streams a
   * body, which could not be sent again after a 401. A cheap HEAD of
   * `container` (with its own re-authentication and retry) does it, once
   * per token.
   */
  async ensureAcceptedToken(container: string): Promise<void> {
    const { token } = await this.#auth.session();
    if (token === this.#acceptedToken) return;
    const operation = `HEAD container "${container}"`;
    const res = await this.request(operation, "HEAD", containerPath(container));
    await discard(res);
    if (!res.ok && res.status !== 404) {
      throw new SwiftError(operation, res.status, "");
    }
  }

  /**
   * The entries of `container` whose names start with `prefix`, in name
   * order, page by page; nothing when the container does not exist yet.
   */
  async *listing(
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
      const path = `${containerPath(container)}?${query}`;
      const res = await this.request(operation, "GET", path);
      if (res.status === 404) return await discard(res); // not created yet
      if (!res.ok) throw await this.errorFrom(operation, res);
      const page = JSON.parse(
        await this.readText(res, operation),
      ) as ListingEntry[];
      // a page may be shorter than asked (a proxy's own limit): only an
      // empty page ends the listing
      if (page.length === 0) return;
      yield* page;
      marker = page[page.length - 1].name;
    }
  }

  /**
   * Records the token an answer was got with; any answer but a 401 shows
   * that Swift accepted it (authentication comes before everything else).
   */
  #answered(res: Response, token: string): void {
    this.#tokens.set(res, token);
    if (res.status !== 401) this.#acceptedToken = token;
  }
}
