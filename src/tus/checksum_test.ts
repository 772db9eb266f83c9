import assert from "node:assert";
import { createHash } from "node:crypto";
import { HttpError } from "../http/errors.ts";
import { checksumMatches, parseUploadChecksum } from "./checksum.ts";

const bytes = new TextEncoder().encode("the quick brown fox");
const digest = (algorithm: string, data: Uint8Array = bytes) =>
  createHash(algorithm).update(data).digest("base64");

Deno.test("tus checksum: sha1 and sha384, checked against the body", async () => {
  for (const algorithm of ["sha1", "sha384"]) {
    const checksum = parseUploadChecksum(`${algorithm} ${digest(algorithm)}`)!;
    assert.strictEqual(checksum.algorithm, algorithm);
    assert(await checksumMatches(checksum, bytes));
    assert(!(await checksumMatches(checksum, bytes.subarray(1))));
    assert(!(await checksumMatches(checksum, new Uint8Array(0))));
  }
  // Names are compared without case; spaces around are fine.
  assert.strictEqual(
    parseUploadChecksum(` SHA1 ${digest("sha1")} `)?.algorithm,
    "sha1",
  );
  assert.strictEqual(parseUploadChecksum(null), undefined);
});

Deno.test("tus checksum: other algorithms and malformed digests are 400s", () => {
  for (
    const [value, pattern] of [
      [
        `md5 ${digest("md5")}`,
        /unsupported checksum algorithm "md5" \(expected one of sha1, sha384\)/,
      ],
      [`sha256 ${digest("sha256")}`, /unsupported/],
      [`crc32 AAAAAA==`, /unsupported/],
      [`__proto__ AAAA`, /unsupported/],
      [`constructor AAAA`, /unsupported/],
      [`sha1`, /expected "<algorithm> <base64 digest>"/],
      [
        `sha1 ${digest("sha1")} extra`,
        /expected "<algorithm> <base64 digest>"/,
      ],
      [``, /expected/],
      [`sha1 ${digest("sha384")}`, /base64 of 20 bytes for sha1/],
      [`sha384 ${digest("sha1")}`, /base64 of 48 bytes for sha384/],
      [`sha1 !!!!`, /base64 of 20 bytes/],
      [`sha1 ${digest("sha1").slice(1)}`, /base64 of 20 bytes/],
    ] as const
  ) {
    assert.throws(
      () => parseUploadChecksum(value),
      (err) =>
        err instanceof HttpError && err.status === 400 &&
        pattern.test(err.message),
      value,
    );
  }
});
