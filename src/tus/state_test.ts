import assert from "node:assert";
import type { PartRecord } from "../catalog.ts";
import { ConflictError } from "../errors.ts";
import {
  encodeInfo,
  parseInfo,
  type TusInfo,
  tusLayout,
  tusPartSize,
  tusState,
} from "./state.ts";

const info: TusInfo = {
  v: 1,
  length: 35,
  metadata: [["a", "eA=="]],
  partSize: 10,
};
const part = (
  n: number,
  size: number,
  complete: boolean,
  hash = `h${n}`,
): PartRecord => ({
  hash,
  size,
  offset: n * 10,
  complete,
});

Deno.test("tus state: info round-trips; anything else is not a tus upload", () => {
  assert.deepStrictEqual(parseInfo(encodeInfo(info)), info);
  for (
    const text of [
      undefined,
      "",
      "null",
      "[]",
      '"x"',
      "{",
      JSON.stringify({ ...info, v: 2 }),
      JSON.stringify({ ...info, length: -1 }),
      JSON.stringify({ ...info, length: 1.5 }),
      JSON.stringify({ ...info, length: "35" }),
      JSON.stringify({ ...info, partSize: 0 }),
      JSON.stringify({ ...info, metadata: {} }),
      JSON.stringify({ ...info, metadata: [["a"]] }),
      JSON.stringify({ ...info, metadata: [["a", 1]] }),
    ]
  ) {
    assert.strictEqual(parseInfo(text), undefined, text);
  }
});

Deno.test("tus state: part size is 8 MiB, the store's least, or length / maxParts", () => {
  const MiB = 1 << 20;
  assert.strictEqual(
    tusPartSize(0, { minPartSize: 5 * MiB, maxParts: 400 }, 8 * MiB),
    8 * MiB,
  );
  assert.strictEqual(
    tusPartSize(0, { minPartSize: 16 * MiB, maxParts: 400 }, 8 * MiB),
    16 * MiB,
  );
  assert.strictEqual(
    tusPartSize(4001, { minPartSize: 1, maxParts: 400 }, 1),
    11,
  );
  assert.strictEqual(
    tusPartSize(2 ** 32, { minPartSize: 5 * MiB, maxParts: 400 }, 8 * MiB),
    10737419,
  );
});

Deno.test("tus state: complete parts, then a tail; offsets from them", async () => {
  const sizes = new Map([["h0", 10], ["h1", 10], ["h2", 4], ["t", 10], [
    "h3",
    5,
  ]]);
  const sizeOf = (hash: string) => Promise.resolve(sizes.get(hash));
  const cases: [(PartRecord | null)[], number, number, number | undefined][] = [
    [[], 0, 0, undefined],
    [[part(0, 4, false, "h2")], 0, 4, 4],
    [[part(0, 10, true)], 1, 10, undefined],
    [[part(0, 10, true), part(1, 10, true), part(2, 4, false, "h2")], 2, 24, 4],
    // A full part left incomplete (a PATCH that died before completing
    // it) still holds the bytes acknowledged before: it counts.
    [[part(0, 10, true), part(1, 10, false, "t")], 1, 20, 10],
    // Its blob gone, or of another size: it counts for nothing.
    [[part(0, 10, true), part(1, 4, false, "gone")], 1, 10, undefined],
    [[part(0, 10, true), part(1, 3, false, "h2")], 1, 10, undefined],
    // The last part is shorter: 35 = 3 × 10 + 5.
    [
      [
        part(0, 10, true),
        part(1, 10, true),
        part(2, 10, true),
        part(3, 5, true),
      ],
      4,
      35,
      undefined,
    ],
    [
      [
        part(0, 10, true),
        part(1, 10, true),
        part(2, 10, true),
        part(3, 5, false, "h3"),
      ],
      3,
      35,
      5,
    ],
  ];
  for (const [parts, complete, offset, tail] of cases) {
    const state = await tusState(parts, info, sizeOf);
    assert.strictEqual(state.complete, complete, JSON.stringify(parts));
    assert.strictEqual(state.offset, offset, JSON.stringify(parts));
    assert.strictEqual(state.tail?.size, tail, JSON.stringify(parts));
  }
});

Deno.test("tus state: a tail out of place counts for nothing; parts changed otherwise are a conflict", () => {
  // Incomplete parts that cannot be a tail: ignored.
  assert.strictEqual(
    tusLayout([{ ...part(0, 4, false), offset: 1 }], info).tail,
    undefined,
  );
  assert.strictEqual(tusLayout([part(0, 11, false)], info).tail, undefined);
  assert.strictEqual(
    tusLayout([
      part(0, 10, true),
      part(1, 10, true),
      part(2, 10, true),
      part(3, 6, false),
    ], info).tail,
    undefined,
  );
  for (
    const parts of [
      [part(0, 9, true)],
      [part(0, 11, true)],
      [{ ...part(0, 10, true), offset: 1 }],
      [
        part(0, 10, true),
        part(1, 10, true),
        part(2, 10, true),
        part(3, 4, true),
      ],
      [
        part(0, 10, true),
        part(1, 10, true),
        part(2, 10, true),
        part(3, 5, true),
        part(4, 1, true),
      ],
      [part(0, 4, false), part(1, 10, true)],
      [null, part(1, 10, true)],
      [part(0, 10, true), null, part(2, 3, false)],
    ]
  ) {
    assert.throws(
      () => tusLayout(parts, info),
      (err) =>
        err instanceof ConflictError &&
        /does not follow the tus layout/.test(err.message),
      JSON.stringify(parts),
    );
  }
});
