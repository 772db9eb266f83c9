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
 *
 * Needs the local Swift (`bash scripts/swift.sh start`; v1 auth at
 * SWIFT_AUTH_URL, default the script's). Standalone:
 * `deno run -A bench/swift.ts [--quick] [--only TEXT]` (`--quick`: 64 MiB, 1
 * round). Everything goes to a fresh container, removed at the end.
 * `swiftSuite` plugs into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { SwiftBackend } from "../src/backends/swift.ts";
import {
  SwiftAuth,
  type SwiftCredentials,
} from "../src/backends/swift_auth.ts";
import {
  type BenchCase,
  type BenchSuite,
  markdownTable,
  runCase,
} from "./harness.ts";
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
      if (bareCount > 1) await bareDelete(`bare-${bareCount - 1}`);
    };
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
        if (last) await backend.remove(last);
        last = name;
      },
      baseline: () => barePut(),
    };
    // What any verified put must do at least: the same bare PUT, hashing
    // the chunks as they go (as bench/embedded.ts's baselines do).
    const putHashedCase: BenchCase = {
      ...putCase,
      name: "put SwiftBackend vs bare fetch PUT + SHA-384",
      baseline: () => barePut(true),
    };
    const openCase: BenchCase = {
      name: "open SwiftBackend vs bare fetch GET",
      size,
      target: 0.9,
      async ours() {
        if (!last) await putCase.ours();
        const { body } = await backend.get(last!);
        if (await drain(body) !== size) throw new Error("short read");
      },
      baseline: bareGet,
    };
    return [putCase, putHashedCase, openCase];
  },
  async close() {
    await cleanup?.();
  },
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

if (import.meta.main) {
  const quick = Deno.args.includes("--quick");
  const only = Deno.args.includes("--only")
    ? Deno.args[Deno.args.indexOf("--only") + 1].toLowerCase()
    : undefined;
  const rounds = quick ? 1 : 5;
  const rssAtStart = Deno.memoryUsage().rss / MiB;
  const cases = await swiftSuite.open({ quick });
  const rows = [];
  try {
    if (typeof cases === "string") throw new Error(cases);
    for (const c of cases) {
      if (only && !c.name.toLowerCase().includes(only)) continue;
      console.error(`running ${c.name} (${rounds} round(s))`);
      rows.push(await runCase(c, rounds));
    }
  } finally {
    await swiftSuite.close?.();
  }
  console.log(markdownTable(rows));
  console.log(
    `\npeak RSS of the process during SwiftBackend puts: ${
      putPeakRss.MiB.toFixed(1)
    } MiB (${rssAtStart.toFixed(1)} MiB at start)`,
  );
  console.log(
    `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}, ${rounds} round(s), median`,
  );
}
