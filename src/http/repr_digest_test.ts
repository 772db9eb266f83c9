import assert from "node:assert";
import { createHash } from "node:crypto";
import { reprDigest } from "./blob_routes.ts";
import { HttpError } from "./errors.ts";
import { reprDigestSha384 } from "./repr_digest.ts";

const hash = createHash("sha384").update("hello").digest("hex");
const b64 = createHash("sha384").update("hello").digest("base64");
const sha256 = createHash("sha256").update("hello").digest("base64");

Deno.test("repr-digest: the sha-384 member, alone or among others", () => {
  assert.strictEqual(reprDigestSha384(`sha-384=:${b64}:`), hash);
  // What GET /blobs/{hash} sends reads back as the hash.
  assert.strictEqual(reprDigestSha384(reprDigest(hash)), hash);
  for (
    const value of [
      `sha-256=:${sha256}:, sha-384=:${b64}:`,
      `sha-384=:${b64}:,sha-256=:${sha256}:`,
      `  sha-384=:${b64}:;x=1;y, unixsum=12`,
      `sha-512=(1 2 "a,b");p=?0, sha-384=:${b64}:`,
      `note="a, sha-384=:AAAA:", sha-384=:${b64}:`,
      // Of duplicates, the last counts (RFC 8941).
      `sha-384=:${"A".repeat(64)}:, sha-384=:${b64}:`,
    ]
  ) {
    assert.strictEqual(reprDigestSha384(value), hash, value);
  }
});

Deno.test("repr-digest: absent, or only other algorithms, is no digest", () => {
  assert.strictEqual(reprDigestSha384(null), undefined);
  assert.strictEqual(reprDigestSha384(`sha-256=:${sha256}:`), undefined);
  assert.strictEqual(reprDigestSha384(`sha-512=:AAAA:, md5`), undefined);
});

Deno.test("repr-digest: malformed fields and sha-384 values are 400s", () => {
  for (
    const value of [
      "",
      "   ",
      `sha-384=${b64}`,
      `sha-384="${b64}"`,
      `sha-384=:${b64}`,
      `sha-384=:${b64.slice(4)}:`,
      `sha-384=:${b64}AAAA:`,
      `sha-384=:${b64}:,`,
      `, sha-384=:${b64}:`,
      `SHA-384=:${b64}:`,
      `sha-384=:${b64}: sha-256=:${sha256}:`,
      `sha-384`,
      `sha-384=:!!:`,
      `x="unterminated, sha-384=:${b64}:`,
      `x=(1 2, sha-384=:${b64}:`,
      "\u0000",
      "é=1",
    ]
  ) {
    assert.throws(
      () => reprDigestSha384(value),
      (err) =>
        err instanceof HttpError && err.status === 400 &&
        /expected a dictionary like sha-384=/.test(err.message),
      JSON.stringify(value),
    );
  }
});
