/**
 * Swift TempURLs: URLs signed with the account's `Temp-URL-Key` that let
 * anyone read an object for a while, straight from Swift (the `tempurl`
 * middleware checks them), without a token.
 *
 * @module
 */

import { BadParamsError } from "../errors.ts";

/**
 * The HMAC digests a TempURL may be signed with. Swift's `tempurl`
 * middleware lists those it accepts in `GET /info` (`allowed_digests`);
 * SHA-1 is deprecated and left out here.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { TempUrlDigest } from "./tempurl.ts";
 *
 * const digest: TempUrlDigest = "sha256";
 * assert(digest === "sha256");
 * ```
 */
export type TempUrlDigest = "sha256" | "sha512";

/**
 * What {@linkcode tempUrl} signs.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import type { TempUrlOptions } from "./tempurl.ts";
 *
 * const options: TempUrlOptions = {
 *   storageURL: "http://127.0.0.1:8080/v1/AUTH_test",
 *   container: "blobs",
 *   name: "greeting",
 *   key: "secret",
 *   expires: 1_700_000_000,
 * };
 * assert(options.container === "blobs");
 * ```
 */
export interface TempUrlOptions {
  /** The account's storage URL, as auth returns it (`…/v1/AUTH_<account>`). */
  storageURL: string;
  /** The container of the object. */
  container: string;
  /** The object's name. */
  name: string;
  /** The account's `X-Account-Meta-Temp-URL-Key` (or `…-Key-2`). */
  key: string;
  /** When the URL stops working, in Unix seconds. */
  expires: number;
  /** The method the URL is good for (default `GET`, which also allows `HEAD`). */
  method?: string;
  /** The HMAC digest (default `sha256`). */
  digest?: TempUrlDigest;
}

/**
 * A TempURL for one object: `<storage URL>/<container>/<object>` with
 * `temp_url_sig`, `temp_url_expires` and `inline`. The signature is the
 * HMAC, keyed with `key`, of `<method>\n<expires>\n<path>`, where the path
 * is the decoded one Swift sees (`/v1/AUTH_<account>/<container>/<object>`);
 * SHA-256 goes as hex, SHA-512 as `sha512:<base64url>`. `inline` makes
 * Swift answer with `Content-Disposition: inline` rather than its default
 * `attachment; filename=…`, so the object is served as the blob store
 * serves it itself, with no disposition forced on the reader.
 *
 * Swift accepts the URL while the key still matches one of the account's
 * (`X-Account-Meta-Temp-URL-Key`, `…-Key-2`) and until `expires` passes;
 * a `Range` header works as on any GET.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { tempUrl } from "./tempurl.ts";
 *
 * const url = new URL(await tempUrl({
 *   storageURL: "http://127.0.0.1:8080/v1/AUTH_test",
 *   container: "my blobs",
 *   name: "greeting",
 *   key: "secret",
 *   expires: 1_700_000_000,
 * }));
 * assert(url.pathname === "/v1/AUTH_test/my%20blobs/greeting");
 * assert(url.searchParams.get("temp_url_sig")?.length === 64);
 * assert(url.searchParams.get("temp_url_expires") === "1700000000");
 * assert(url.searchParams.has("inline"));
 * ```
 */
export async function tempUrl(options: TempUrlOptions): Promise<string> {
  const { container, name, key, expires } = options;
  if (!key) {
    throw new BadParamsError(
      "missing Swift tempUrlKey (expected a non-empty string)",
    );
  }
  if (!Number.isSafeInteger(expires) || expires < 0) {
    throw new BadParamsError(
      `invalid TempURL expiry (expected Unix seconds, got ${expires})`,
    );
  }
  const base = new URL(options.storageURL);
  const accountPath = base.pathname.replace(/\/+$/, "");
  const parts = [container, ...name.split("/")];
  const encoded = `${accountPath}/${parts.map(encodeURIComponent).join("/")}`;
  const signed = `${decodeURIComponent(accountPath)}/${parts.join("/")}`;
  const sig = await tempUrlSignature(
    key,
    options.method ?? "GET",
    expires,
    signed,
    options.digest ?? "sha256",
  );
  const query = new URLSearchParams({
    temp_url_sig: sig,
    temp_url_expires: String(expires),
  });
  return `${base.origin}${encoded}?${query}&inline`;
}

/**
 * The `temp_url_sig` of a TempURL: the HMAC, keyed with `key`, of
 * `<method>\n<expires>\n<path>` (the decoded path, as Swift computes it),
 * as hex for SHA-256, as `sha512:<base64url>` for SHA-512 (the form Swift
 * documents for it).
 *
 * @example Swift's own `get_hmac` gives the same
 * ```ts
 * import assert from "node:assert";
 * import { tempUrlSignature } from "./tempurl.ts";
 *
 * const sig = await tempUrlSignature("mykey", "GET", 1512508563, "/v1/AUTH_account/container/object", "sha256");
 * assert(sig === "732fcac368abb10c78a4cbe95c3fab7f311584532bf779abd5074e13cbe8b88b");
 * ```
 */
export async function tempUrlSignature(
  key: string,
  method: string,
  expires: number,
  path: string,
  digest: TempUrlDigest = "sha256",
): Promise<string> {
  if (digest !== "sha256" && digest !== "sha512") {
    throw new BadParamsError(
      `invalid Swift tempUrlDigest (expected "sha256" or "sha512", got ${
        JSON.stringify(digest)
      })`,
    );
  }
  const hash = digest === "sha256" ? "SHA-256" : "SHA-512";
  const hmacKey = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(key),
    { name: "HMAC", hash },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(
    await crypto.subtle.sign(
      "HMAC",
      hmacKey,
      new TextEncoder().encode(`${method}\n${expires}\n${path}`),
    ),
  );
  if (digest === "sha256") {
    return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  const base64 = btoa(String.fromCharCode(...mac));
  return `sha512:${
    base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
  }`;
}
