/**
 * Authentication to Swift: Keystone v3 password tokens and Swift's own v1
 * auth (tempauth, swauth), with the token cached, renewed before it
 * expires, and one authentication in flight however many requests wait.
 *
 * @module
 */

import { BadParamsError } from "../errors.ts";
import { discard, type FetchFn, HttpClient, parseJson } from "../request.ts";
import { SWIFT, SwiftError } from "./error.ts";

/**
 * Who to authenticate as, and where.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SwiftCredentials } from "@blobstore/blobstore/swift";
 *
 * const keystone: SwiftCredentials = {
 *   authURL: "http://127.0.0.1:5000/v3",
 *   username: "tester",
 *   secret: "testing",
 *   tenant: "test",
 * };
 * assert(keystone.tenant === "test");
 * ```
 */
export interface SwiftCredentials {
  /**
   * The auth endpoint: Keystone's `.../v3` (v3), or Swift's v1 auth URL such
   * as `.../auth/v1.0`.
   */
  authURL: string;
  /** The user name (v1: the user part of `account:user` when `tenant` is set). */
  username: string;
  /** The password (v3) or key (v1). */
  secret: string;
  /** The project name (v3) or account (v1, sent as `tenant:username`). */
  tenant?: string;
  /** The Keystone v3 domain name of the user and the project; default "Default". */
  domain?: string;
  /** The catalog region of the object-store endpoint (v3); default: any. */
  region?: string;
  /** 1 or 3; default: detected from `authURL` (see {@linkcode detectAuthVersion}). */
  authVersion?: 1 | 3;
  /** The storage URL to use instead of the one auth returns. */
  endpointURL?: string;
}

/**
 * An authenticated session: the token and where to send requests with it.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { SwiftSession } from "./auth.ts";
 *
 * const session: SwiftSession = {
 *   token: "t",
 *   storageURL: "http://127.0.0.1:8080/v1/AUTH_test",
 *   expiresAt: Infinity,
 * };
 * assert(session.expiresAt > Date.now());
 * ```
 */
export interface SwiftSession {
  /** The value of the `X-Auth-Token` header. */
  token: string;
  /** The account's storage URL, without a trailing slash. */
  storageURL: string;
  /** When the token expires (ms since the epoch); `Infinity` when not told. */
  expiresAt: number;
}

/** Renew a token this long before it expires, at most... */
const MAX_RENEW_MARGIN_MS = 5 * 60_000;
/** ...and at most this part of its whole lifetime (short-lived tokens). */
const RENEW_MARGIN_FRACTION = 0.25;

/**
 * The auth version an auth URL implies: 3 when its path has a `/v3`
 * segment, 1 otherwise (`/auth/v1.0`, `/auth`). Keystone v2.0 (`/v2.0`) was
 * removed upstream and is refused with a `BadParamsError`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { detectAuthVersion } from "./auth.ts";
 *
 * assert(detectAuthVersion("http://127.0.0.1:5000/v3") === 3);
 * assert(detectAuthVersion("http://127.0.0.1:8080/auth/v1.0") === 1);
 * ```
 */
export function detectAuthVersion(authURL: string): 1 | 3 {
  let path: string;
  try {
    path = new URL(authURL).pathname;
  } catch {
    throw new BadParamsError(
      `invalid Swift authURL (expected an http(s) URL, got "${authURL}")`,
    );
  }
  if (/\/v3(\/|$)/.test(path)) return 3;
  if (/\/v2(\.0)?(\/|$)/.test(path)) {
    throw new BadParamsError(
      `Keystone v2.0 is not supported (expected a v3 or v1 authURL, got "${authURL}")`,
    );
  }
  return 1;
}

/**
 * Holds the token for one set of credentials. {@linkcode SwiftAuth.session}
 * returns the cached session while it is fresh, and otherwise
 * authenticates, once for all concurrent callers.
 * {@linkcode SwiftAuth.invalidate} drops a token Swift refused (401), so the
 * next call authenticates again.
 *
 * @example With a stand-in for Swift's v1 auth
 * ```ts
 * import assert from "node:assert";
 * import { SwiftAuth } from "./auth.ts";
 *
 * let calls = 0;
 * const auth = new SwiftAuth({
 *   authURL: "http://127.0.0.1:1/auth/v1.0",
 *   tenant: "test",
 *   username: "tester",
 *   secret: "testing",
 * }, {
 *   fetch: () => {
 *     calls++;
 *     return Promise.resolve(new Response(null, {
 *       headers: { "X-Auth-Token": "AUTH_tk1", "X-Storage-Url": "http://127.0.0.1:1/v1/AUTH_test" },
 *     }));
 *   },
 * });
 * const [a, b] = await Promise.all([auth.session(), auth.session()]);
 * assert(a.token === "AUTH_tk1" && b === a);
 * assert.strictEqual(calls, 1); // one authentication for both
 * auth.invalidate("AUTH_tk1"); // Swift refused it: the next call authenticates again
 * await auth.session();
 * assert.strictEqual(calls, 2);
 * ```
 */
export class SwiftAuth {
  readonly #credentials: SwiftCredentials;
  readonly #version: 1 | 3;
  readonly #http: HttpClient<SwiftError>;
  #session: SwiftSession | undefined;
  #renewAt = 0;
  #pending: Promise<SwiftSession> | undefined;
  /** Tokens handed out, kept only to redact them from error messages. */
  readonly #tokens = new Set<string>();

  /**
   * Creates the authenticator. Nothing is sent until the first
   * {@linkcode SwiftAuth.session} call. A token fetch that meets a
   * connection error or a 5xx answer is retried `retries` times (default
   * 3), with exponential backoff from `retryDelayMs` (default 200).
   */
  constructor(
    credentials: SwiftCredentials,
    options: {
      fetch?: FetchFn;
      timeoutMs?: number;
      retries?: number;
      retryDelayMs?: number;
    } = {},
  ) {
    this.#credentials = credentials;
    this.#version = credentials.authVersion ??
      detectAuthVersion(credentials.authURL);
    if (this.#version !== 1 && this.#version !== 3) {
      throw new BadParamsError(
        `unsupported Swift authVersion (expected 1 or 3, got ${this.#version})`,
      );
    }
    this.#http = new HttpClient(SWIFT, {
      ...options,
      secrets: () => this.secrets,
    });
  }

  /** The auth version in use (1 or 3). */
  get version(): 1 | 3 {
    return this.#version;
  }

  /** Everything that must never appear in a message: the secret and the tokens. */
  get secrets(): Iterable<string> {
    return [this.#credentials.secret, ...this.#tokens];
  }

  /** Returns a fresh session, authenticating when there is none or it is about to expire. */
  session(): Promise<SwiftSession> {
    if (this.#session && Date.now() < this.#renewAt) {
      return Promise.resolve(this.#session);
    }
    // Single flight: every caller arriving while an authentication is under
    // way waits for that one instead of starting its own.
    this.#pending ??= this.#authenticate().finally(() => {
      this.#pending = undefined;
    });
    return this.#pending;
  }

  /**
   * Forgets `token` after Swift refused it, unless a newer one already
   * replaced it (so concurrent 401s lead to a single re-authentication).
   */
  invalidate(token: string): void {
    if (this.#session?.token === token) this.#session = undefined;
  }

  async #authenticate(): Promise<SwiftSession> {
    const issuedAt = Date.now();
    const session = this.#version === 3
      ? await this.#authenticateV3()
      : await this.#authenticateV1();
    if (this.#credentials.endpointURL) {
      session.storageURL = trimSlash(this.#credentials.endpointURL);
    }
    const margin = Math.min(
      MAX_RENEW_MARGIN_MS,
      (session.expiresAt - issuedAt) * RENEW_MARGIN_FRACTION,
    );
    this.#renewAt = session.expiresAt - margin;
    this.#tokens.add(session.token);
    this.#session = session;
    return session;
  }

  async #authenticateV1(): Promise<SwiftSession> {
    const { authURL, tenant, username, secret } = this.#credentials;
    const operation = "v1 authentication";
    // A token fetch changes nothing that a second one would harm: retried.
    const res = await this.#http.request(operation, authURL, {
      headers: {
        "X-Auth-User": tenant ? `${tenant}:${username}` : username,
        "X-Auth-Key": secret,
      },
    }, { idempotent: true });
    if (!res.ok) throw await this.#http.errorFrom(operation, res);
    await discard(res);
    const token = res.headers.get("X-Auth-Token") ??
      res.headers.get("X-Storage-Token");
    const storageURL = res.headers.get("X-Storage-Url");
    if (!token || (!storageURL && !this.#credentials.endpointURL)) {
      throw new SwiftError(
        operation,
        res.status,
        "expected X-Auth-Token and X-Storage-Url headers in the answer",
      );
    }
    const expiresIn = Number(res.headers.get("X-Auth-Token-Expires"));
    return {
      token,
      storageURL: trimSlash(storageURL ?? ""),
      expiresAt: expiresIn > 0 ? Date.now() + expiresIn * 1000 : Infinity,
    };
  }

  async #authenticateV3(): Promise<SwiftSession> {
    const { authURL, tenant, username, secret, region } = this.#credentials;
    const domain = { name: this.#credentials.domain ?? "Default" };
    const operation = "Keystone v3 authentication";
    const body = {
      auth: {
        identity: {
          methods: ["password"],
          password: { user: { name: username, domain, password: secret } },
        },
        ...(tenant ? { scope: { project: { name: tenant, domain } } } : {}),
      },
    };
    // A POST, but one that only issues a token: safe to send again.
    const res = await this.#http.request(operation, tokensURL(authURL), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }, { idempotent: true });
    if (!res.ok) throw await this.#http.errorFrom(operation, res);
    const token = res.headers.get("X-Subject-Token");
    const document = parseJson(
      await this.#http.readText(res, operation),
    ) as KeystoneTokenDocument | undefined;
    if (!token || !document?.token) {
      throw new SwiftError(
        operation,
        res.status,
        "expected an X-Subject-Token header and a token document",
      );
    }
    const expiresAt = Date.parse(document.token.expires_at ?? "");
    const storageURL = this.#credentials.endpointURL ??
      objectStoreURL(document.token, region);
    if (storageURL === undefined) {
      throw new SwiftError(
        operation,
        res.status,
        `no public object-store endpoint${
          region ? ` in region "${region}"` : ""
        } in the catalog (pass tenant to get a project-scoped catalog, or endpointURL)`,
      );
    }
    return {
      token,
      storageURL: trimSlash(storageURL),
      expiresAt: Number.isFinite(expiresAt) ? expiresAt : Infinity,
    };
  }
}

/** The parts of Keystone's token document we read. */
interface KeystoneTokenDocument {
  token?: {
    expires_at?: string;
    catalog?: {
      type: string;
      endpoints: {
        interface: string;
        url: string;
        region?: string;
        region_id?: string;
      }[];
    }[];
  };
}

function objectStoreURL(
  token: NonNullable<KeystoneTokenDocument["token"]>,
  region: string | undefined,
): string | undefined {
  for (const service of token.catalog ?? []) {
    if (service.type !== "object-store") continue;
    const endpoint = service.endpoints.find((e) =>
      e.interface === "public" &&
      (!region || e.region_id === region || e.region === region)
    );
    if (endpoint) return endpoint.url;
  }
  return undefined;
}

/** `.../v3` → `.../v3/auth/tokens` (an URL already ending so is kept). */
function tokensURL(authURL: string): string {
  const base = trimSlash(authURL);
  return base.endsWith("/auth/tokens") ? base : `${base}/auth/tokens`;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, "");
}
