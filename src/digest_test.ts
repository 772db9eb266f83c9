import { ok, rejects, strictEqual } from "node:assert";
import { isValidHash, sha384, Sha384Stream } from "./digest.ts";

// FIPS 180-2 test vectors.
const VECTORS: [string, string][] = [
  [
    "",
    "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b",
  ],
  [
    "abc",
    "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
  ],
  [
    "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
    "3391fdddfc8dc7393707a65b1b4709397cf8b1d162af05abfe8f450de5f36bc6b0455a8520bc4e6f5fe95b1fe3c8452b",
  ],
];
const MILLION_A =
  "9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b07b8b3dc38ecc4ebae97ddd87f3d8985";

async function digestThroughStream(chunks: Uint8Array[]) {
  const hasher = new Sha384Stream();
  const out = ReadableStream.from(chunks).pipeThrough(hasher);
  const passed = new Uint8Array(await new Response(out).arrayBuffer());
  return { digest: await hasher.digest, bytes: hasher.bytes, passed };
}

Deno.test("Sha384Stream: known vectors, bytes passed through unchanged", async () => {
  for (const [input, expected] of VECTORS) {
    const bytes = new TextEncoder().encode(input);
    const got = await digestThroughStream(bytes.length ? [bytes] : []);
    strictEqual(got.digest, expected, JSON.stringify(input));
    strictEqual(got.bytes, bytes.length);
    strictEqual(new TextDecoder().decode(got.passed), input);
  }
});

Deno.test("Sha384Stream: the digest does not depend on chunk boundaries", async () => {
  const a = new TextEncoder().encode("a".repeat(1_000_000));
  for (const size of [1, 7, 111, 128, 4096, 65536, 1_000_000]) {
    const chunks = [];
    for (let i = 0; i < a.length; i += size) {
      chunks.push(a.subarray(i, i + size));
    }
    const got = await digestThroughStream(
      size === 1 ? chunks.slice(0, 1000) : chunks,
    );
    if (size !== 1) strictEqual(got.digest, MILLION_A, `chunks of ${size}`);
    else strictEqual(got.bytes, 1000);
  }
  // Empty chunks change nothing.
  const empty = new Uint8Array();
  const abc = new TextEncoder().encode("abc");
  strictEqual(
    (await digestThroughStream([
      empty,
      abc.subarray(0, 1),
      empty,
      abc.subarray(1),
    ])).digest,
    VECTORS[1][1],
  );
});

Deno.test("Sha384Stream: digest rejects when the stream is aborted", async () => {
  const hasher = new Sha384Stream();
  const failure = new Error("boom");
  const source = new ReadableStream({
    start(c) {
      c.enqueue(new Uint8Array(3));
    },
    pull(c) {
      c.error(failure);
    },
  });
  await rejects(
    source.pipeThrough(hasher).pipeTo(new WritableStream()),
    failure,
  );
  await rejects(hasher.digest, failure);
});

Deno.test("sha384: every kind of source", async () => {
  const abc = new TextEncoder().encode("abc");
  strictEqual(await sha384(abc), VECTORS[1][1]);
  strictEqual(await sha384(new Blob(["abc"])), VECTORS[1][1]);
  strictEqual(await sha384(new Blob(["a", "bc"]).stream()), VECTORS[1][1]);
  strictEqual(
    await sha384((async function* () {
      yield abc.subarray(0, 2);
      yield abc.subarray(2);
    })()),
    VECTORS[1][1],
  );
  strictEqual(await sha384(new Uint8Array()), VECTORS[0][1]);
});

Deno.test("isValidHash: 96 lowercase hex characters only", () => {
  ok(isValidHash(VECTORS[0][1]));
  ok(!isValidHash(VECTORS[0][1].toUpperCase()));
  ok(!isValidHash(VECTORS[0][1].slice(1)));
  ok(!isValidHash(VECTORS[0][1] + "0"));
  ok(!isValidHash("g".repeat(96)));
  ok(!isValidHash(undefined));
  ok(!isValidHash(42));
});
