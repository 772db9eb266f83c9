/**
 * SwiftBackend against bare `fetch` to the same Swift, in the same run:
 *
 * - put of a 256 MiB blob through `SwiftBackend` (streamed, verified:
 *   SHA-384 and size) vs a bare chunked `fetch` PUT of the same bytes with
 *   the same token; target ≥ 0.9. The peak RSS of the process during our
 *   puts is reported too (absolute, and its growth).
 * - the same put vs the bare PUT hashing its chunks with SHA-384 as they
 *   go: the least work a verified put does, so the ratio is the backend's
 *   own cost (the first ratio also pays for SHA-384, ~0.45 s of CPU per
 *   256 MiB here, on 2 cores that Swift's servers keep busy).
 * - open (read back whole) through `SwiftBackend` vs a bare `fetch` GET of
 *   the same object; target ≥ 0.9.
 * - peak RSS growth during a 1 GiB put and open; ≤ 64 MiB.
 *
 * Needs the local Swift (`bash scripts/swift.sh start`; v1 auth at
 * SWIFT_AUTH_URL, default the script's). Standalone:
 * `deno run -A bench/swift.ts [--quick] [--only TEXT]` (`--quick`: 64 MiB, 1
 * round). Removals of the previous round's copies happen before each
 * round, untimed. Everything goes to a fresh container, removed at the end.
 * `swiftSuite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { SwiftBackend } from "../src/swift/backend.ts";
import { SwiftAuth, type SwiftCredentials } from "../src/swift/auth.ts";
import type { BenchCase, BenchSuite } from "./harness.ts";
import { putBoundNote } from "./bound.ts";
import { rssCases } from "./rss.ts";
import { standalone } from "./run.ts";
import { drain, hashOfSize, streamOf } from "./data.ts";

const MiB = 2 ** 20;

const credentials: SwiftCredentials = {
  authURL: Deno.env.get("SWIFT_AUTH_URL") ??
    "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};

let cleanup: (() => Promise<void>) | undefined;

/** The absolute peak RSS seen during our puts, in MiB. */
export const putPeakRss = { MiB: 0 };

/** The SwiftBackend cases. */
export const swiftSuite: BenchSuite = {
  name: "swift",
  async open({ quick }) {
    const size = quick ? 64 * MiB : 256 * MiB;
    const auth = new SwiftAuth(credentials, { timeoutMs: 5000 });
    let session;
    try {
      session = await auth.session();
    } catch (err) {
      return `Swift not reachable (${
        (err as Error).message
      }); run \`bash scripts/swift.sh start\``;
    }
    const { token, storageURL } = session;
    const hash = hashOfSize(size);
    const bucket = `blobstore-bench-${crypto.randomUUID().slice(0, 8)}`;
    const backend = new SwiftBackend({ ...credentials, bucket });
    const containerURL = `${storageURL}/${bucket}`;
    const headers = { "X-Auth-Token": token };
    await check(
      await fetch(containerURL, { method: "PUT", headers }),
      "PUT container",
    );

    const bareDelete = async (name: string) => {
      const res = await fetch(`${containerURL}/${name}`, {
        method: "DELETE",
        headers,
      });
      await res.body?.cancel();
    };
    cleanup = async () => {
      const res = await fetch(`${containerURL}?format=json`, { headers });
      for (const { name } of await res.json() as { name: string }[]) {
        await bareDelete(name);
      }
      await (await fetch(containerURL, { method: "DELETE", headers })).body
        ?.cancel();
    };

    // Every put round writes a fresh name and removes the previous one
    // afterwards (outside the measured put for both paths' deletions cost
    // the same), so Swift holds at most a few copies.
    let bareCount = 0;
    const barePut = async (hashing = false) => {
      const name = `bare-${++bareCount}`;
      const digest = createHash("sha384");
      const body = hashing
        ? streamOf(size).pipeThrough(
          new TransformStream({
            transform(chunk, controller) {
              digest.update(chunk);
              controller.enqueue(chunk);
            },
          }),
        )
        : streamOf(size);
      await check(
        await fetch(`${containerURL}/${name}`, {
          method: "PUT",
          headers: { ...headers, "Content-Type": "application/octet-stream" },
          body,
          duplex: "half",
        } as RequestInit),
        "bare PUT",
      );
      if (hashing && digest.digest("hex") !== hash) {
        throw new Error("bare PUT: wrong hash");
      }
    };
    // The last bare copy stays for the GETs; older ones go.
    const removeOldBare = async () => {
      while (bareDeleted < bareCount - 1) {
        await bareDelete(`bare-${++bareDeleted}`);
      }
    };
    let bareDeleted = 0;
    const bareGet = async () => {
      if (bareCount === 0) await barePut();
      const res = await fetch(`${containerURL}/bare-${bareCount}`, { headers });
      if (!res.ok || await drain(res.body!) !== size) {
        throw new Error(`bare GET: HTTP ${res.status} or short read`);
      }
    };

    let last: string | undefined;
    const putCase: BenchCase = {
      name: "put SwiftBackend vs bare fetch PUT",
      size,
      target: 0.9,
      async beforeRound() {
        if (last) await backend.remove(last);
        last = undefined;
        await removeOldBare();
      },
      async ours() {
        const name = `${hash}-${
          crypto.randomUUID().replaceAll("-", "").slice(0, 16)
        }`;
        const timer = setInterval(sampleRss, 5);
        try {
          await backend.put(name, streamOf(size), size, hash);
        } finally {
          clearInterval(timer);
          sampleRss();
        }
        last = name;
      },
      baseline: () => barePut(),
      note: putBoundNote,
    };
    // What any verified put must do at least: the same bare PUT, hashing
    // the chunks as they go (as bench/embedded.ts's baselines do).
    const putHashedCase: BenchCase = {
      ...putCase,
      name: "put SwiftBackend vs bare fetch PUT + SHA-384",
      baseline: () => barePut(true),
      note: undefined,
    };
    const openCase: BenchCase = {
      name: "open SwiftBackend vs bare fetch GET",
      size,
      target: 0.9,
      async setup() {
        if (!last) await putCase.ours();
        if (bareCount === 0) await barePut();
      },
      async ours() {
        const { body } = await backend.get(last!);
        if (await drain(body) !== size) throw new Error("short read");
      },
      baseline: bareGet,
    };
    return [
      putCase,
      putHashedCase,
      openCase,
      ...rssCases("SwiftBackend", backend, quick ? 128 * MiB : 1024 * MiB),
    ];
  },
  async close() {
    await cleanup?.();
    cleanup = undefined;
  },
  note: () =>
    putPeakRss.MiB
      ? `peak RSS of the process during SwiftBackend puts: ${
        putPeakRss.MiB.toFixed(0)
      } MiB`
      : undefined,
};

function sampleRss() {
  putPeakRss.MiB = Math.max(putPeakRss.MiB, Deno.memoryUsage().rss / MiB);
}

async function check(res: Response, what: string) {
  if (!res.ok) {
    throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
  }
  await res.body?.cancel();
}

if (import.meta.main) await standalone(swiftSuite);
