/**
 * The embedded backends against the raw file system, in the same run:
 *
 * - put of a 256 MiB blob through `FileBackend` vs hashing the same chunks
 *   while writing them with `Deno.open`, then fsync (what a put must do at
 *   least); target ≥ 0.9.
 * - open (read back whole) through `FileBackend` vs reading the file with
 *   `Deno.open`, 1 MiB at a time into fresh buffers (what a stream must
 *   hand its consumer); target ≥ 0.9. And, for scale, vs reading it into
 *   one reused buffer (the bare cost of the reads; no target).
 * - put and open through `KvBackend` on a KV file, against the same
 *   baselines (no target: KV is a database, not a file).
 *
 * Standalone: `deno run -A --unstable-kv bench/embedded.ts [--quick]`
 * (`--quick`: 64 MiB, 1 round; `--only TEXT`: the cases whose name has it). Data goes to a temporary directory,
 * removed at the end. `embeddedSuite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { FileBackend } from "../src/backends/file.ts";
import { KvBackend } from "../src/backends/kv.ts";
import {
  type BenchCase,
  type BenchSuite,
  markdownTable,
  runCase,
} from "./harness.ts";
import { chunksOf, drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;

let workDir: string | undefined;
let kv: Deno.Kv | undefined;

/** The FileBackend and KvBackend cases. */
export const embeddedSuite: BenchSuite = {
  name: "embedded",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const hash = hashOfSize(size);
    workDir = await Deno.makeTempDir({ prefix: "blobstore-bench-" });
    const files = new FileBackend(join(workDir, "files"));
    kv = await Deno.openKv(join(workDir, "bench.kv"));
    const kvBackend = new KvBackend(kv);
    const rawPath = join(workDir, "raw");

    // The baseline writes a fresh file and removes the previous one, as a
    // put round does, so both do the same file-system work.
    let rawCount = 0;
    const rawWrite = async () => {
      const previous = rawPath + rawCount;
      rawCount++;
      const h = createHash("sha384");
      const file = await Deno.open(rawPath + rawCount, {
        write: true,
        createNew: true,
      });
      try {
        for (const chunk of chunksOf(size)) {
          h.update(chunk);
          let written = 0;
          while (written < chunk.length) {
            written += await file.write(chunk.subarray(written));
          }
        }
        await file.sync();
      } finally {
        file.close();
      }
      if (h.digest("hex") !== hash) throw new Error("raw write: wrong hash");
      await Deno.remove(previous).catch(() => {});
    };
    // What any streaming reader must do at least: read 1 MiB at a time
    // into fresh buffers (a consumer may keep every chunk it is given).
    // With `reuse`, into one buffer: the bare cost of the reads.
    const rawRead = async (reuse: boolean) => {
      using file = await Deno.open(rawPath + rawCount, { read: true });
      let buffer = new Uint8Array(MiB);
      let total = 0;
      for (let n; (n = await file.read(buffer)) !== null;) {
        total += n;
        if (!reuse) buffer = new Uint8Array(MiB);
      }
      if (total !== size) throw new Error("short read");
    };

    // Each put round writes a fresh name and removes the previous one, so
    // the disk holds at most two copies.
    const putCase = (
      label: string,
      backend: FileBackend | KvBackend,
      target?: number,
    ): BenchCase => {
      let last: string | undefined;
      return {
        name: `put ${label} vs hash + write with Deno.open`,
        size,
        target,
        async ours() {
          const name = `${hash}-${
            crypto.randomUUID().replaceAll("-", "").slice(0, 16)
          }`;
          await backend.put(name, streamOf(size), size, hash);
          if (last) await backend.remove(last);
          last = name;
        },
        baseline: rawWrite,
        async teardown() {
          if (last) await backend.remove(last);
        },
      };
    };
    const openCase = (
      label: string,
      backend: FileBackend | KvBackend,
      reuse: boolean,
      target?: number,
    ): BenchCase => {
      const name = `${hash}-${reuse ? "0000000000000002" : "0000000000000001"}`;
      let stored = false;
      return {
        name: `open ${label} vs read with Deno.open${
          reuse ? " into one reused buffer" : ""
        }`,
        size,
        target,
        async ours() {
          if (!stored) {
            await backend.put(name, streamOf(size), size, hash);
            stored = true;
          }
          const { body } = await backend.get(name);
          if (await drain(body) !== size) throw new Error("short read");
        },
        async baseline() {
          // Before the first round of ours too: the raw file must exist.
          if (rawCount === 0) await rawWrite();
          await rawRead(reuse);
        },
        async teardown() {
          await backend.remove(name);
        },
      };
    };

    return [
      putCase("FileBackend", files, 0.9),
      openCase("FileBackend", files, false, 0.9),
      openCase("FileBackend", files, true),
      putCase("KvBackend (KV file)", kvBackend),
      openCase("KvBackend (KV file)", kvBackend, false),
    ];
  },
  async close() {
    kv?.close();
    if (workDir) await Deno.remove(workDir, { recursive: true });
  },
};

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const only = Deno.args.includes("--only")
    ? Deno.args[Deno.args.indexOf("--only") + 1].toLowerCase()
    : undefined;
  const rounds = quick ? 1 : 5;
  const cases = await embeddedSuite.open({ quick });
  const rows = [];
  try {
    if (typeof cases === "string") throw new Error(cases);
    for (const c of cases) {
      if (only && !c.name.toLowerCase().includes(only)) continue;
      console.error(`running ${c.name} (${rounds} round(s))`);
      rows.push(await runCase(c, rounds));
    }
  } finally {
    await embeddedSuite.close?.();
  }
  console.log(markdownTable(rows));
  console.log(
    `\n${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${rounds} round(s), median`,
  );
}
