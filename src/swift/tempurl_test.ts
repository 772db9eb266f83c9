/**
 * TempURL signatures and URLs, checked against values from Swift 2.30's
 * own `swift.common.digest.get_hmac` (the function its `tempurl`
 * middleware verifies with). The URLs against a real Swift are in
 * tests/redirect_test.ts.
 *
 * @module
 */

import { rejects, strictEqual } from "node:assert";
import { BadParamsError } from "../errors.ts";
import { tempUrl, tempUrlSignature } from "./tempurl.ts";

Deno.test("tempUrlSignature: SHA-256 hex, as Swift's get_hmac", async () => {
  strictEqual(
    await tempUrlSignature(
      "mykey",
      "GET",
      1512508563,
      "/v1/AUTH_account/container/object",
    ),
    "732fcac368abb10c78a4cbe95c3fab7f311584532bf779abd5074e13cbe8b88b",
  );
  strictEqual(
    await tempUrlSignature("k", "HEAD", 1, "/v1/AUTH_test/b/o", "sha256"),
    "596d2e97ce5f82b79ccb2fb952c707c0f0ba3e73e83ba1171d4fef4de1e4b4ef",
  );
});

Deno.test("tempUrlSignature: SHA-512 as sha512:<base64url>, UTF-8 key and path", async () => {
  strictEqual(
    await tempUrlSignature(
      "clé",
      "GET",
      1700000000,
      "/v1/AUTH_test/my blobs/é/x",
      "sha512",
    ),
    "sha512:F96ZsOTYHyisjMvDuuVTlND8sG1QJgSPvs2juV62jBPkJmNQW-BWkgvYbFbb_nrtwVPZ_XMQAIxjRrXZ5jHZgQ",
  );
});

Deno.test("tempUrl: encoded path in the URL, decoded path signed, inline", async () => {
  const url = new URL(
    await tempUrl({
      storageURL: "http://127.0.0.1:8080/v1/AUTH_test/",
      container: "my blobs",
      name: "é/x",
      key: "clé",
      expires: 1700000000,
      digest: "sha512",
    }),
  );
  strictEqual(url.origin, "http://127.0.0.1:8080");
  strictEqual(url.pathname, "/v1/AUTH_test/my%20blobs/%C3%A9/x");
  strictEqual(
    url.searchParams.get("temp_url_sig"),
    "sha512:F96ZsOTYHyisjMvDuuVTlND8sG1QJgSPvs2juV62jBPkJmNQW-BWkgvYbFbb_nrtwVPZ_XMQAIxjRrXZ5jHZgQ",
  );
  strictEqual(url.searchParams.get("temp_url_expires"), "1700000000");
  strictEqual(url.searchParams.get("inline"), "");
});

Deno.test("tempUrl: an account segment that is encoded in the storage URL is signed decoded", async () => {
  const url = new URL(
    await tempUrl({
      storageURL: "https://swift.example.com/v1/AUTH_a%20b",
      container: "c",
      name: "o",
      key: "k",
      expires: 1,
    }),
  );
  strictEqual(url.pathname, "/v1/AUTH_a%20b/c/o");
  strictEqual(
    url.searchParams.get("temp_url_sig"),
    await tempUrlSignature("k", "GET", 1, "/v1/AUTH_a b/c/o"),
  );
});

Deno.test("tempUrl: refuses a missing key, a bad expiry and an unknown digest", async () => {
  const base = {
    storageURL: "http://127.0.0.1:8080/v1/AUTH_test",
    container: "c",
    name: "o",
    key: "k",
    expires: 1,
  };
  await rejects(tempUrl({ ...base, key: "" }), BadParamsError);
  await rejects(tempUrl({ ...base, expires: 1.5 }), BadParamsError);
  await rejects(tempUrl({ ...base, expires: -1 }), BadParamsError);
  await rejects(
    // @ts-expect-error: SHA-1 is not offered
    tempUrl({ ...base, digest: "sha1" }),
    BadParamsError,
  );
});
