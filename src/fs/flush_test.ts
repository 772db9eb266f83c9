/**
 * FileBackend's background flushes: a body past 4 MiB is flushed while it
 * is written (and still synced in full before the put succeeds), a small
 * one never is, and a flush that fails fails the put, leaving nothing.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { join } from "node:path";
import { FileBackend } from "./backend.ts";
import { newBlobName } from "../names.ts";
import {
  bytesOf,
  chunkedStream,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";

/** Every file under `dir`, as paths relative to it. */
async function filesUnder(dir: string, base = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(dir, base))) {
    const path = base ? `${base}/${entry.name}` : entry.name;
    if (entry.isDirectory) out.push(...await filesUnder(dir, path));
    else out.push(path);
  }
  return out.sort();
}

/**
 * Runs `fn` with the calls of `FsFile.prototype.syncData` and `sync`
 * counted, `syncData` doing `replacement` instead when given.
 */
async function withSyncs(
  fn: (calls: { syncData: number; sync: number }) => Promise<void>,
  replacement?: () => Promise<void>,
): Promise<void> {
  const proto = Deno.FsFile.prototype;
  const original = { syncData: proto.syncData, sync: proto.sync };
  const calls = { syncData: 0, sync: 0 };
  proto.syncData = function (this: Deno.FsFile) {
    calls.syncData++;
    return replacement ? replacement() : original.syncData.call(this);
  };
  proto.sync = function (this: Deno.FsFile) {
    calls.sync++;
    return original.sync.call(this);
  };
  try {
    await fn(calls);
  } finally {
    proto.syncData = original.syncData;
    proto.sync = original.sync;
  }
}

Deno.test("FileBackend: a put past 4 MiB is flushed as it is written and still synced whole; a small one is not flushed", async () => {
  const root = await Deno.makeTempDir({ prefix: "blobstore-flush-" });
  try {
    const backend = new FileBackend(root);
    const big = bytesOf(9 * 1024 * 1024 + 123, 1);
    const small = bytesOf(3 * 1024 * 1024, 2);
    await withSyncs(async (calls) => {
      await backend.put(
        "big",
        chunkedStream(big, 256 * 1024),
        big.length,
        hashOf(big),
      );
      ok(calls.syncData >= 1, `expected background flushes, got none`);
      // The file's own fsync and its directory's, as without flushes, and
      // the entries of the two fan-out directories this first put made.
      strictEqual(calls.sync, 4);
      deepStrictEqual(await readAll((await backend.get("big")).body), big);
    });
    await withSyncs(async (calls) => {
      // In the same fan-out directory as "big": nothing new to make.
      await backend.put(
        "big_small",
        chunkedStream(small, 256 * 1024),
        small.length,
        hashOf(small),
      );
      deepStrictEqual(calls, { syncData: 0, sync: 2 });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("FileBackend: a failed background flush fails the put and leaves no file", async () => {
  const root = await Deno.makeTempDir({ prefix: "blobstore-flush-" });
  try {
    const backend = new FileBackend(root);
    const bytes = bytesOf(6 * 1024 * 1024, 3);
    const name = newBlobName(hashOf(bytes));
    const failure = new Error("flush failed (simulated EIO)");
    await withSyncs(async () => {
      await rejects(
        backend.put(
          name,
          chunkedStream(bytes, 64 * 1024),
          bytes.length,
          hashOf(bytes),
        ),
        (err) => err === failure,
      );
    }, () => Promise.reject(failure));
    deepStrictEqual(await filesUnder(root), []);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
