import { deepStrictEqual, strictEqual, throws } from "node:assert";
import type { PartRecord } from "./catalog.ts";
import { BadParamsError, ConflictError } from "./errors.ts";
import {
  checkFinish,
  checkPartParams,
  checkPartPlacement,
  inferOffset,
  multipartIndex,
} from "./multipart.ts";

const H = (c: string) => c.repeat(96);
const part = (
  offset: number,
  size: number,
  hash = H("a"),
  complete = true,
): PartRecord => ({
  hash,
  size,
  offset,
  complete,
});
const limits = { minPartSize: 100, maxPartSize: 1000, maxParts: 4 };

Deno.test("checkPartParams: numbers and sizes in range", () => {
  checkPartParams(0, 1, limits);
  checkPartParams(3, 999, limits);
  throws(() => checkPartParams(-1, 1, limits), BadParamsError);
  throws(() => checkPartParams(0.5, 1, limits), BadParamsError);
  throws(
    () => checkPartParams(4, 1, limits),
    /part number 4 too big \(maximum 3\)/,
  );
  throws(() => checkPartParams(0, 0, limits), BadParamsError);
  throws(
    () => checkPartParams(0, 1000, limits),
    /part 0 too big \(maximum 999 bytes, got 1000\)/,
  );
});

Deno.test("inferOffset: only for a later part passing 0 after a known one", () => {
  strictEqual(inferOffset([part(0, 100)], 1, 0), 100);
  strictEqual(inferOffset([part(0, 100, H("a"), false)], 1, 0), 100);
  strictEqual(inferOffset([part(0, 100)], 1, 7), 7);
  strictEqual(inferOffset([], 0, 0), 0);
  strictEqual(inferOffset([], 3, 9), 9);
});

Deno.test("inferOffset: 0 for a later part with no predecessor is BadParamsError", () => {
  throws(
    () => inferOffset([part(0, 100)], 2, 0),
    /cannot infer the offset of part 2: part 1 is not uploaded yet/,
  );
  throws(() => inferOffset([], 1, 0), BadParamsError);
});

Deno.test("checkPartPlacement: contiguous in any order, min size for all but last", () => {
  const parts = [part(0, 100), null, part(250, 10)];
  checkPartPlacement(parts, 1, 150, 100, 100);
  throws(
    () => checkPartPlacement(parts, 1, 150, 101, 100),
    /part 1 should start at 100 \(got offset 101\)/,
  );
  throws(
    () => checkPartPlacement(parts, 1, 140, 100, 100),
    /part 1 should end at 250 \(got 240\)/,
  );
  throws(
    () => checkPartPlacement([part(0, 50)], 1, 150, 50, 100),
    /part 0 too small \(need at least 100 bytes, got 50\)/,
  );
  throws(
    () => checkPartPlacement([null, part(50, 10)], 0, 50, 0, 100),
    /part 0 too small/,
  );
  throws(
    () => checkPartPlacement([], 0, 50, 3, 100),
    /part 0 should start at 0/,
  );
  throws(
    () => checkPartPlacement([part(0, 100), null, null], 2, 10, 50, 100),
    /should start at or after 100/,
  );
  throws(() => checkPartPlacement([], 1, 10, -5, 100), BadParamsError);
});

Deno.test("checkFinish: count, hashes, completeness, sizes", () => {
  const upload = {
    id: "u",
    expires: new Date(),
    parts: [part(0, 100, H("a")), part(100, 5, H("b"))],
  };
  deepStrictEqual(
    checkFinish(upload, [{ hash: H("a") }, { hash: H("b") }], 100),
    {
      sizes: [100, 5],
      hashes: [H("a"), H("b")],
    },
  );
  throws(
    () => checkFinish(upload, [{ hash: H("a") }], 100),
    /part count mismatch/,
  );
  throws(
    () => checkFinish(upload, [{ hash: H("a") }, { hash: H("c") }], 100),
    /hash mismatch on part 1/,
  );
  throws(
    () => checkFinish(upload, [{ hash: H("a") }, { hash: H("b") }], 101),
    /part 0 too small/,
  );
  const incomplete = {
    ...upload,
    parts: [part(0, 100), part(100, 5, H("b"), false)],
  };
  throws(
    () => checkFinish(incomplete, [{ hash: H("a") }, { hash: H("b") }], 100),
    ConflictError,
  );
  const hole = { ...upload, parts: [null, part(100, 5)] };
  throws(
    () => checkFinish(hole, [{ hash: H("a") }, { hash: H("a") }], 100),
    /part 0 not uploaded yet/,
  );
});

Deno.test("multipartIndex: only for a finished upload whose parts are all complete", () => {
  const expires = new Date();
  deepStrictEqual(multipartIndex({ parts: [], expires, hash: H("e") }), {
    sizes: [],
    hashes: [],
  });
  deepStrictEqual(
    multipartIndex({
      parts: [part(0, 1), part(1, 2, H("b"))],
      expires,
      hash: H("c"),
    }),
    { sizes: [1, 2], hashes: [H("a"), H("b")] },
  );
  // Go's UploadInfo.Index: no index before the upload has a hash.
  strictEqual(multipartIndex({ parts: [], expires }), undefined);
  strictEqual(multipartIndex({ parts: [part(0, 1)], expires }), undefined);
  strictEqual(
    multipartIndex({
      parts: [part(0, 1, H("a"), false)],
      expires,
      hash: H("c"),
    }),
    undefined,
  );
  strictEqual(
    multipartIndex({ parts: [null], expires, hash: H("c") }),
    undefined,
  );
});
