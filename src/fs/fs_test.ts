/**
 * FileBackend: the backend and store contracts on a temporary directory,
 * names that could escape the root, the layout, no temporary file left by
 * a failed put, whole read chunks and a file cut short under a read, the
 * sweep of stale temporary files, seeking ranges, crash safety of a put
 * killed midway, and GC's batch removal (`removeMany`). Needs no unstable
 * flag.
 *
 * @module
 */

import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { join } from "node:path";
import { FileBackend } from "./backend.ts";
import { collect as runCollect } from "../collect.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { sha384 } from "../digest.ts";
import { BadParamsError, CorruptBlobError, NotFoundError } from "../errors.ts";
import { newBlobName } from "../names.ts";
import { Store } from "../store.ts";
import { testBackendContract } from "../../tests/backend_contract.ts";
import { testStoreContract } from "../../tests/store_contract.ts";
import {
  bytesOf,
  chunkedStream,
  collect,
  generatedStream,
  hashOf,
  readAll,
} from "../../tests/helpers.ts";

async function tempRoot(): Promise<{ root: string; close(): Promise<void> }> {
  const root = await Deno.makeTempDir({ prefix: "blobstore-fs-" });
  return { root, close: () => Deno.remove(root, { recursive: true }) };
}

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

Deno.test("FileBackend: backend contract", async (t) => {
  await testBackendContract(t, async () => {
    const { root, close } = await tempRoot();
    return { backend: new FileBackend(root), close };
  });
});

Deno.test("MemoryCatalog + FileBackend: store contract, hashing on workers", async (t) => {
  await testStoreContract(t, async () => {
    const { root, close } = await tempRoot();
    return {
      catalog: new MemoryCatalog(),
      backend: new FileBackend(root),
      close,
    };
  }, { hashing: "worker" });
});

Deno.test("FileBackend: names that could leave the root are BadParamsError", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const bad = [
      "",
      ".",
      "..",
      "../x",
      "../../etc/passwd",
      "a/b",
      "/abs",
      "a\\b",
      "..\\x",
      "a..b",
      "a\0b",
      ".tmp-x",
      ".hidden",
      "x".repeat(201),
      "a b",
      "é",
    ];
    for (const name of bad) {
      await rejects(backend.get(name), BadParamsError, `get ${name}`);
      await rejects(
        backend.put(name, chunkedStream(new Uint8Array(1), 1), 1, hashOf("x")),
        BadParamsError,
        `put ${name}`,
      );
      await rejects(backend.remove(name), BadParamsError, `remove ${name}`);
    }
    deepStrictEqual(await filesUnder(root), []);
  } finally {
    await close();
  }
});

Deno.test("FileBackend: objects fan out by name prefix; short names too", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const bytes = bytesOf(100);
    const name = newBlobName(hashOf(bytes));
    await backend.put(name, chunkedStream(bytes, 7), 100, hashOf(bytes));
    await backend.put("a", chunkedStream(bytes, 100), 100, hashOf(bytes));
    deepStrictEqual(
      await filesUnder(root),
      [`${name.slice(0, 2)}/${name.slice(2, 4)}/${name}`, "a_/__/a"].sort(),
    );
    deepStrictEqual(await readAll((await backend.get("a")).body), bytes);
  } finally {
    await close();
  }
});

Deno.test("FileBackend: reads hand out whole 1 MiB chunks; a file cut short is CorruptBlobError", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const bytes = bytesOf(3 * 1024 * 1024 + 10, 4);
    const name = newBlobName(hashOf(bytes));
    await backend.put(
      name,
      chunkedStream(bytes, 65536),
      bytes.length,
      hashOf(bytes),
    );
    const chunks = await collect((await backend.get(name, { start: 5 })).body);
    deepStrictEqual(
      chunks.map((c) => [c.length, c.buffer.byteLength]),
      [[1048576, 1048576], [1048576, 1048576], [1048576, 1048576], [5, 5]],
      "every chunk fills its own buffer",
    );
    // Truncated after it was opened: the size was read at open.
    const opened = await backend.get(name);
    await Deno.truncate(
      join(root, name.slice(0, 2), name.slice(2, 4), name),
      1_500_000,
    );
    await rejects(readAll(opened.body), CorruptBlobError);
  } finally {
    await close();
  }
});

Deno.test("Store on FileBackend: a blob or part changed in storage is a CorruptBlobError, never served or hashed as good", async (t) => {
  const { root, close } = await tempRoot();
  try {
    const store = new Store({
      catalog: new MemoryCatalog(),
      backend: new FileBackend(root),
      minPartSize: 1000,
    });
    const pathOf = async (hash: string) => {
      const name = (await store.catalog.getRef(hash))!.name;
      return join(root, name.slice(0, 2), name.slice(2, 4), name);
    };
    // Part 1 goes first and is damaged before part 0 arrives: folding it
    // into the running hash then fails (quietly: part 0's put succeeded),
    // so the finish reads it back, and must report it.
    const damaged = async (
      seed: number,
      damage: (path: string) => Promise<void>,
    ) => {
      const parts = [bytesOf(4000, seed), bytesOf(1500, seed + 1)];
      const hashes = parts.map((p) => hashOf(p));
      const finish = hashes.map((hash) => ({ hash }));
      const id = await store.newUpload(new Date(Date.now() + 3600_000));
      await store.putPart(id, 1, parts[1], parts[1].length, 4000, hashes[1]);
      await damage(await pathOf(hashes[1]));
      await store.putPart(id, 0, parts[0], parts[0].length, 0, hashes[0]);
      await rejects(
        store.finishUpload(id, finish),
        (err) =>
          err instanceof CorruptBlobError &&
          err.message.includes("part 1 is corrupt in storage"),
      );
      strictEqual((await store.uploadInfo(id)).hash, undefined);
    };
    await t.step("a blob cut short or grown before it is opened", async () => {
      for (const size of [1000, 5000]) {
        const bytes = bytesOf(4000, size);
        const hash = hashOf(bytes);
        await store.put(bytes, hash, bytes.length);
        await Deno.truncate(await pathOf(hash), size);
        await rejects(
          store.open(hash),
          (err) =>
            err instanceof CorruptBlobError &&
            err.message.includes(`expected 4000 bytes, got ${size}`),
        );
      }
    });
    await t.step(
      "a part cut short",
      () => damaged(10, (path) => Deno.truncate(path, 1000)),
    );
    await t.step(
      "a part with a byte flipped",
      () =>
        damaged(20, async (path) => {
          const bytes = await Deno.readFile(path);
          bytes[700] ^= 0xff;
          await Deno.writeFile(path, bytes);
        }),
    );
    await t.step("a part grown longer", () =>
      damaged(30, async (path) => {
        const bytes = await Deno.readFile(path);
        await Deno.writeFile(path, new Uint8Array([...bytes, 1, 2, 3]));
      }));
  } finally {
    await close();
  }
});

Deno.test("FileBackend: a failed put leaves no temporary file", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const bytes = bytesOf(300_000);
    const name = newBlobName(hashOf(bytes));
    await rejects(
      backend.put(
        name,
        chunkedStream(bytes, 10_000),
        bytes.length,
        hashOf("x"),
      ),
    );
    await rejects(
      backend.put(name, chunkedStream(bytes, 10_000), 1000, hashOf(bytes)),
    );
    deepStrictEqual(await filesUnder(root), []);
  } finally {
    await close();
  }
});

Deno.test("FileBackend: list deletes nothing; sweep deletes only stale temporary files", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root, { graceMs: 60_000 });
    const bytes = bytesOf(10);
    const name = newBlobName(hashOf(bytes));
    await backend.put(name, chunkedStream(bytes, 10), 10, hashOf(bytes));
    const dir = join(root, name.slice(0, 2), name.slice(2, 4));
    const stale = join(dir, `.tmp-${name}-0000000000000001`);
    const fresh = join(dir, `.tmp-${name}-0000000000000002`);
    await Deno.writeFile(stale, bytes);
    await Deno.writeFile(fresh, bytes);
    const old = new Date(Date.now() - 120_000);
    await Deno.utime(stale, old, old);

    deepStrictEqual((await collect(backend.list())).map((o) => o.name), [name]);
    ok(await Deno.stat(stale), "listing deletes nothing");
    strictEqual(await backend.sweep(), 1);
    await rejects(Deno.stat(stale), Deno.errors.NotFound);
    ok(await Deno.stat(fresh));
    strictEqual(await backend.sweep(), 0);
    strictEqual(await backend.sweep(0), 1);
    deepStrictEqual(
      await filesUnder(root),
      [`${name.slice(0, 2)}/${name.slice(2, 4)}/${name}`],
    );
  } finally {
    await close();
  }
});

Deno.test("FileBackend: collect clears stale temporary files and orphans, never in a dry run", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const store = new Store({ catalog: new MemoryCatalog(), backend });
    // An orphan (bytes no reference names) and a killed put's temporary
    // file, both two hours old; a temporary file of a put still running.
    const bytes = bytesOf(10);
    const name = newBlobName(hashOf(bytes));
    await backend.put(name, chunkedStream(bytes, 10), 10, hashOf(bytes));
    const dir = join(root, name.slice(0, 2), name.slice(2, 4));
    const stale = join(dir, `.tmp-${name}-0000000000000001`);
    const fresh = join(dir, `.tmp-${name}-0000000000000002`);
    await Deno.writeFile(stale, bytes);
    await Deno.writeFile(fresh, bytes);
    const old = new Date(Date.now() - 2 * 3600_000);
    for (const path of [stale, join(dir, name)]) {
      await Deno.utime(path, old, old);
    }
    const files = await filesUnder(root);

    const dry = await runCollect(store, { dryRun: true });
    strictEqual(dry.debris, undefined);
    strictEqual(dry.swept?.removed, 1);
    deepStrictEqual(await filesUnder(root), files);

    const real = await runCollect(store);
    strictEqual(real.debris, 1);
    strictEqual(real.swept?.removed, 1);
    deepStrictEqual(await filesUnder(root), [
      `${name.slice(0, 2)}/${name.slice(2, 4)}/${fresh.split("/").at(-1)}`,
    ]);
  } finally {
    await close();
  }
});

Deno.test("FileBackend: a range seeks to its start instead of reading up to it", async () => {
  const { root, close } = await tempRoot();
  const read = Deno.FsFile.prototype.read;
  try {
    const backend = new FileBackend(root);
    const size = 32 << 20;
    const name = "big";
    const hash = await sha384(generatedStream(size));
    await backend.put(name, generatedStream(size), size, hash);
    let bytesRead = 0;
    Deno.FsFile.prototype.read = async function (p: Uint8Array) {
      const n = await read.call(this, p);
      bytesRead += n ?? 0;
      return n;
    };
    const { body } = await backend.get(name, { start: size - 10 });
    strictEqual((await readAll(body)).length, 10);
    strictEqual(bytesRead, 10);
  } finally {
    Deno.FsFile.prototype.read = read;
    await close();
  }
});

Deno.test("FileBackend: a put killed midway leaves nothing visible, and a sweep cleans it", async () => {
  const { root, close } = await tempRoot();
  try {
    const code = `
      const { FileBackend } = await import(${
      JSON.stringify(new URL("./backend.ts", import.meta.url).href)
    });
      const { MemoryCatalog } = await import(${
      JSON.stringify(
        new URL("../memory/catalog.ts", import.meta.url).href,
      )
    });
      const { Store } = await import(${
      JSON.stringify(new URL("../store.ts", import.meta.url).href)
    });
      const store = new Store({ catalog: new MemoryCatalog(), backend: new FileBackend(${
      JSON.stringify(root)
    }) });
      let sent = 0;
      const body = new ReadableStream({
        pull(controller) {
          if (sent >= ${3 << 20}) Deno.exit(0);
          controller.enqueue(new Uint8Array(65536).fill(sent & 255));
          sent += 65536;
        },
      }, { highWaterMark: 0 });
      await store.put(body, ${JSON.stringify(hashOf("whatever"))}, ${8 << 20});
      Deno.exit(3); // not reached
    `;
    const { code: status, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "null",
      stderr: "piped",
    }).output();
    strictEqual(status, 0, new TextDecoder().decode(stderr));

    const files = await filesUnder(root);
    strictEqual(files.length, 1, "the killed put's temporary file");
    ok(files[0].split("/")[2].startsWith(".tmp-"));
    const backend = new FileBackend(root);
    const store = new Store({ catalog: new MemoryCatalog(), backend });
    deepStrictEqual(await collect(backend.list()), []);
    await rejects(store.open(hashOf("whatever")), NotFoundError);
    strictEqual(await backend.sweep(), 0, "within the grace period");
    strictEqual(await backend.sweep(0), 1);
    deepStrictEqual(await filesUnder(root), []);
  } finally {
    await close();
  }
});

Deno.test("FileBackend.removeMany: removes every name given; absent ones and a bad name", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(root);
    const names: string[] = [];
    for (let i = 0; i < 60; i++) {
      const bytes = bytesOf(100 + i, i);
      const name = newBlobName(hashOf(bytes));
      await backend.put(
        name,
        chunkedStream(bytes, 64),
        bytes.length,
        hashOf(bytes),
      );
      names.push(name);
    }
    const [keep, ...rest] = names;

    // A bad name refuses the whole batch before anything is removed.
    await rejects(backend.removeMany([...rest, "../escape"]), BadParamsError);
    strictEqual((await collect(backend.list())).length, 60);

    // More names than removals in flight, an absent one, one given twice.
    await backend.removeMany([...rest, "absent", rest[0]]);
    deepStrictEqual((await collect(backend.list())).map((o) => o.name), [keep]);
    for (const name of rest) await rejects(backend.get(name), NotFoundError);
    await backend.removeMany([]);
    await backend.removeMany(rest);
    strictEqual((await collect(backend.list())).length, 1);
  } finally {
    await close();
  }
});

Deno.test("FileBackend: new fan-out directories are made once and made again if removed behind its back", async () => {
  const { root, close } = await tempRoot();
  try {
    const backend = new FileBackend(join(root, "fresh"));
    const bytes = bytesOf(1000, 3);
    const name = newBlobName(hashOf(bytes));
    await backend.put(name, chunkedStream(bytes, 100), 1000, hashOf(bytes));
    await Deno.remove(join(root, "fresh"), { recursive: true });
    await backend.put(name, chunkedStream(bytes, 100), 1000, hashOf(bytes));
    deepStrictEqual(await readAll((await backend.get(name)).body), bytes);
  } finally {
    await close();
  }
});
