/**
 * Who may write (and, when configured, read): the `authorize` hook and the
 * bearer-token check that is its default.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Decides whether a request may proceed. Returning `false` answers 401.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { Authorizer } from "./auth.ts";
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
 * import { bearerToken } from "./auth.ts";
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
 * variable is set and readable, else `undefined`. It never prompts for the
 * permission to read it.
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
  const permission = Deno.permissions.querySync?.({
    name: "env",
    variable: "BLOBSTORE_TOKEN",
  });
  if (permission && permission.state !== "granted") return undefined;
  const token = Deno.env.get("BLOBSTORE_TOKEN");
  return token ? bearerToken(token) : undefined;
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}
