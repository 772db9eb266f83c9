/**
 * Who may write (and, when configured, read): the `authorize` hook and the
 * bearer-token check that is its default.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import { readEnv, UNREADABLE } from "../env.ts";
import { HttpError } from "./errors.ts";

/**
 * Decides whether a request may proceed. Returning `false` answers 401.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { Authorizer } from "@blobstore/blobstore/http";
 *
 * const onlyLocal: Authorizer = (req) => new URL(req.url).hostname === "127.0.0.1";
 * assert(onlyLocal(new Request("http://127.0.0.1/")) === true);
 * ```
 */
export type Authorizer = (req: Request) => boolean | Promise<boolean>;

/**
 * Returns an {@linkcode Authorizer} that accepts requests carrying
 * `Authorization: Bearer <token>`. The comparison takes the same time
 * whatever the guess, so the token cannot be found byte by byte.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { bearerToken } from "@blobstore/blobstore/http";
 *
 * const authorize = bearerToken("s3cret");
 * const req = new Request("http://x/", { headers: { authorization: "Bearer s3cret" } });
 * assert(authorize(req) === true);
 * assert(authorize(new Request("http://x/")) === false);
 * ```
 */
export function bearerToken(token: string): (req: Request) => boolean {
  if (token === "") throw new TypeError("bearer token must not be empty");
  const expected = digest(token);
  return (req) => {
    const match = req.headers.get("authorization")?.match(
      /^Bearer\s+(\S+)\s*$/i,
    );
    return match !== null && match !== undefined &&
      timingSafeEqual(digest(match[1]), expected);
  };
}

/**
 * Returns the bearer-token authorizer for `BLOBSTORE_TOKEN` when that
 * variable is set, `undefined` when it is known not to be set (everyone
 * may write), and an authorizer that refuses every request when it cannot
 * be read: without the permission to read it, nothing tells whether it is
 * set, and a token the operator configured must never leave the service
 * open. Such a refusal is a 503 `auth_unavailable` saying why. It never
 * prompts for the permission.
 *
 * Runs on Deno (`Deno.env`, asking `Deno.permissions` first) and on
 * runtimes without the `Deno` global (`process.env`).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tokenFromEnv } from "./auth.ts";
 *
 * const authorize = tokenFromEnv();
 * assert(authorize === undefined || typeof authorize === "function");
 * ```
 */
export function tokenFromEnv(): Authorizer | undefined {
  const token = readEnv(TOKEN_VARIABLE);
  if (token === UNREADABLE) return refuseUnreadableToken;
  return token ? bearerToken(token) : undefined;
}

const TOKEN_VARIABLE = "BLOBSTORE_TOKEN";

function refuseUnreadableToken(): never {
  throw new HttpError(
    503,
    "auth_unavailable",
    `writes are refused: the service cannot read ${TOKEN_VARIABLE} (no permission to read the environment), so it cannot tell whether a token is required (grant --allow-env=${TOKEN_VARIABLE}, or configure authorize)`,
  );
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}
