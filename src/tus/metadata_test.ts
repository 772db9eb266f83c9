import assert from "node:assert";
import { HttpError } from "../http/errors.ts";
import {
  declaredSha384,
  formatMetadata,
  MAX_METADATA_LENGTH,
  parseMetadata,
  withSha384,
} from "./metadata.ts";

const isBad = (err: unknown) =>
  err instanceof HttpError && err.status === 400 &&
  err.code === "bad_metadata" &&
  err.message.startsWith("invalid Upload-Metadata (expected");

Deno.test("tus metadata: pairs as tus-js-client sends them, kept in order and read back", () => {
  const header = `filename ${
    btoa("world.txt")
  },filetype dGV4dC9wbGFpbg==,is_confidential, empty `;
  const parsed = parseMetadata(header);
  assert.deepStrictEqual(parsed, [
    ["filename", btoa("world.txt")],
    ["filetype", "dGV4dC9wbGFpbg=="],
    ["is_confidential", ""],
    ["empty", ""],
  ]);
  assert.deepStrictEqual(parseMetadata(formatMetadata(parsed)), parsed);
  assert.deepStrictEqual(parseMetadata(null), []);
  assert.deepStrictEqual(parseMetadata("   "), []);
  // Keys are any printable ASCII but space and comma.
  assert.deepStrictEqual(
    parseMetadata("a.b-c_d~!$%&'()*+/:;<=>?@[]^`{|} eA=="),
    [
      ["a.b-c_d~!$%&'()*+/:;<=>?@[]^`{|}", "eA=="],
    ],
  );
});

Deno.test("tus metadata: malformed, duplicate or oversized is a 400", () => {
  for (
    const header of [
      ",",
      "a eA==,",
      ",a eA==",
      "a eA==,,b",
      "a  eA==",
      "a eA== b",
      "a eA",
      "a e===",
      "a eA=x",
      "a ~~~~",
      "a eA==,a eA==",
      "clé eA==",
      "a\u0000 eA==",
      "a\teA==",
      "a eA==\u007f",
      `a ${"A".repeat(MAX_METADATA_LENGTH)}`,
    ]
  ) {
    assert.throws(() => parseMetadata(header), isBad, JSON.stringify(header));
  }
});

Deno.test("tus metadata: sha384 is the base64 of 96 hex digits, read and set", () => {
  const hash = "0123456789abcdef".repeat(6);
  assert.strictEqual(declaredSha384([["sha384", btoa(hash)]]), hash);
  assert.strictEqual(
    declaredSha384([["sha384", btoa(hash.toUpperCase())]]),
    hash,
  );
  assert.strictEqual(declaredSha384([]), undefined);
  for (
    const value of [
      "",
      btoa(hash.slice(1)),
      btoa(`${hash}0`),
      btoa("g".repeat(96)),
      btoa(` ${hash.slice(1)}`),
    ]
  ) {
    assert.throws(() => declaredSha384([["sha384", value]]), isBad, value);
  }
  // The service's own sha384 replaces the client's, at the end.
  assert.deepStrictEqual(
    withSha384([["sha384", btoa("x")], ["name", "eA=="]], hash),
    [["name", "eA=="], ["sha384", btoa(hash)]],
  );
});
