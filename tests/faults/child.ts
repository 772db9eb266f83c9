/**
 * A child process of the fault suite: another store on the same catalog and
 * backend as the test, for puts from several processes, races of
 * conditional catalog steps, and a writer killed between writing its bytes
 * and recording them.
 *
 *   deno run -A --unstable-kv tests/faults/child.ts '<ChildTask as JSON>'
 *
 * Writes one JSON line per result on stdout.
 *
 * @module
 */

import type { Backend } from "../../src/backend.ts";
import type { BlobRef, Catalog } from "../../src/catalog.ts";
import { Store } from "../../src/store.ts";
import { bytesOf, chunkedStream, hashOf } from "../helpers.ts";
import { isTypedError } from "./workload.ts";

/** Which catalog and backend to open, and where. */
export type Seams =
  | { kind: "kv+file"; kvPath: string; dir: string }
  | { kind: "kv+kv"; kvPath: string }
  | { kind: "kv+swift"; kvPath: string; authURL: string; bucket: string }
  | { kind: "mongo+mongo"; url: string; db: string };

/** What a child does. */
export type ChildTask =
  | { mode: "put"; seams: Seams; startAt: number; size: number; seed: number }
  | {
    mode: "setOwner";
    seams: Seams;
    startAt: number;
    owner: string;
    ids: string[];
  }
  | { mode: "orphan"; seams: Seams; size: number; seed: number };

/** Opens the seams a task names; `close` releases them. */
export async function openSeams(seams: Seams): Promise<{
  catalog: Catalog;
  backend: Backend;
  close(): Promise<void>;
}> {
  if (seams.kind === "mongo+mongo") {
    const { MongoClient } = await import("mongodb");
    const { MongoCatalog } = await import("../../src/mongo/catalog.ts");
    const { MongoBackend } = await import("../../src/mongo/backend.ts");
    const client = await MongoClient.connect(seams.url, {
      serverSelectionTimeoutMS: 5000,
    });
    const db = client.db(seams.db);
    return {
      catalog: new MongoCatalog(db, "blobstore"),
      backend: new MongoBackend(db, "blobstore"),
      close: () => client.close(),
    };
  }
  const { KvCatalog } = await import("../../src/kv/catalog.ts");
  const kv = await Deno.openKv(seams.kvPath);
  const catalog = new KvCatalog(kv);
  let backend: Backend;
  if (seams.kind === "kv+file") {
    const { FileBackend } = await import("../../src/fs/backend.ts");
    backend = new FileBackend(seams.dir);
  } else if (seams.kind === "kv+kv") {
    const { KvBackend } = await import("../../src/kv/backend.ts");
    backend = new KvBackend(kv);
  } else {
    const { SwiftBackend } = await import("../../src/swift/backend.ts");
    backend = new SwiftBackend({
      authURL: seams.authURL,
      tenant: "test",
      username: "tester",
      secret: "testing",
      bucket: seams.bucket,
    });
  }
  return { catalog, backend, close: () => Promise.resolve(kv.close()) };
}

function say(result: unknown) {
  console.log(JSON.stringify(result));
}

async function waitUntil(at: number) {
  await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
}

function failure(err: unknown) {
  return {
    ok: false,
    error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
    typed: isTypedError(err),
  };
}

async function main(task: ChildTask) {
  const seams = await openSeams(task.seams);
  try {
    if (task.mode === "put") {
      const bytes = bytesOf(task.size, task.seed);
      const store = new Store(seams);
      await waitUntil(task.startAt);
      try {
        await store.put(
          chunkedStream(bytes, 64 * 1024),
          hashOf(bytes),
          bytes.length,
        );
        say({ ok: true });
      } catch (err) {
        say(failure(err));
      }
    } else if (task.mode === "setOwner") {
      const far = new Date("9999-01-01T00:00:00Z");
      await waitUntil(task.startAt);
      // all at once: the more steps overlap, the likelier a race shows
      const results = await Promise.all(
        task.ids.map((id) =>
          seams.catalog.setOwner(id, task.owner, far).catch((err) => {
            say(failure(err));
            return false;
          })
        ),
      );
      say({ ok: true, won: task.ids.filter((_, i) => results[i]) });
    } else {
      // The bytes get written; the reference never does: insertRef tells
      // the parent, which kills this process (SIGKILL) right there.
      const inner = seams.catalog;
      const insertRef = (ref: BlobRef) => {
        say({ written: ref.name });
        return new Promise<boolean>(() => {});
      };
      const catalog = new Proxy(inner, {
        get(target, key) {
          if (key === "insertRef") return insertRef;
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }) as Catalog;
      const store = new Store({ catalog, backend: seams.backend });
      const bytes = bytesOf(task.size, task.seed);
      await store.put(bytes, hashOf(bytes), bytes.length);
    }
  } finally {
    await seams.close();
  }
}

if (import.meta.main) {
  await main(JSON.parse(Deno.args[0]) as ChildTask);
}
