/**
 * tus in a real browser: headless Chromium (tests/browser.ts) loads a page
 * from one loopback origin with tus-js-client's browser build (its
 * `dist/tus.min.js`, from the npm package deno.json pins), and the page
 * (tests/fixtures/tus_page.js) uploads a 64 MiB Blob of random bytes to
 * `main.ts serve --cors-origin <the page's origin>` (a subprocess, as
 * `deno task start` runs it) on another origin, through a TCP proxy that
 * cuts the connection mid-body. tus-js-client retries, HEADs and resumes
 * with XMLHttpRequest, reading the tus headers CORS exposes; the test then
 * reads the blob back by the hash of the final answer's `Upload-Metadata`,
 * and its SHA-384 must be the one the page computed with Web Crypto.
 *
 * Without Chromium or the package the suite skips with a message, or fails
 * in CI.
 *
 * @module
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import {
  chromiumAvailable,
  HTML,
  JAVASCRIPT,
  pageServer,
  runPage,
} from "./browser.ts";
import { startServer } from "./server_process.ts";
import { CuttingProxy } from "./tcp_proxy.ts";
import { tusAvailable, tusBrowserBuild } from "./tus_js_client.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
/** How long the page may take to make, hash and upload the bytes. */
const PAGE_TIMEOUT_MS = 60_000;

const PAGE_HTML = `<!doctype html><meta charset="utf-8">
<title>blobstore tus</title><script src="/tus.min.js"></script>
<script type="module" src="/tus_page.js"></script>`;

async function pages() {
  return pageServer({
    "/": { body: PAGE_HTML, type: HTML },
    "/tus.min.js": { body: await tusBrowserBuild(), type: JAVASCRIPT },
    "/tus_page.js": {
      body: await Deno.readTextFile(
        new URL("./fixtures/tus_page.js", import.meta.url),
      ),
      type: JAVASCRIPT,
    },
  });
}

interface Logged {
  method: string;
  offset: number | null;
  status: number;
  answered: number | null;
}

/** Two cut points in the client's bytes: one in the first half, one after. */
function cutPoints(size: number): [number, number] {
  const first = Math.floor(MiB + Math.random() * (size / 2 - 2 * MiB));
  const second = Math.floor(
    first + MiB + Math.random() * (size - first - 2 * MiB),
  );
  return [first, second];
}

for (const chunkSize of [undefined, 8 * MiB]) {
  const how = chunkSize === undefined
    ? "one PATCH"
    : `${chunkSize / MiB} MiB PATCHes`;
  Deno.test({
    name:
      `browser tus: a page on an allowed origin uploads a 64 MiB Blob with tus-js-client in ${how}, the connection cut twice, and the blob read back has the page's SHA-384`,
    ignore: !chromiumAvailable || !tusAvailable,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "blobstore-browser-tus-" });
      const page = await pages();
      const server = await startServer(join(dir, "data"), [
        "--cors-origin",
        page.origin,
      ]);
      // Every client byte counts: the browser keeps its connections alive,
      // so the first cut lands in the first PATCH, the second wherever the
      // bytes then are.
      const proxy = new CuttingProxy(server.port);
      try {
        const points = cutPoints(SIZE);
        console.error(`  cut after ${points.join(", ")} client bytes`);
        const cutting = (async () => {
          await proxy.cutAfter(points[0]);
          await proxy.cutAfter(points[1] - proxy.countedBytes);
        })();
        const query = new URLSearchParams({
          endpoint: `${proxy.url}/tus/`,
          size: String(SIZE),
          ...(chunkSize ? { chunkSize: String(chunkSize) } : {}),
        });
        const started = performance.now();
        const out = await runPage(`${page.origin}/?${query}`, {
          outcomeMs: PAGE_TIMEOUT_MS,
        });
        const ms = Math.round(performance.now() - started);
        const text = JSON.stringify(out, null, 1);
        assert.strictEqual(out.error, undefined, text);
        assert.strictEqual(out.origin, page.origin);
        assert.strictEqual(out.size, SIZE);
        assert.strictEqual(proxy.cuts, 2, text);
        await cutting;

        // The page saw its PATCH fail (status 0), or Chromium, which
        // sends a request again by itself when its connection drops before
        // an answer, had it answered 423 or 409 (the server still ending
        // the cut one, or past its offset); then it HEADed and went on
        // from where the server was, and never started over.
        const log: Logged[] = out.log;
        assert.ok(
          log.some((e) =>
            e.method === "PATCH" && [0, 409, 423].includes(e.status)
          ),
          text,
        );
        assert.strictEqual(log.filter((e) => e.method === "POST").length, 1);
        for (let i = 0; i < log.length; i++) {
          if (log[i].method !== "HEAD") continue;
          const patch = log.slice(i + 1).find((e) => e.method === "PATCH");
          if (patch) assert.strictEqual(patch.offset, log[i].answered, text);
        }
        assert.ok(log.some((e) => e.method === "HEAD" && e.answered! > 0));

        // The final answer, its tus headers readable across origins.
        assert.strictEqual(out.status, 204);
        assert.strictEqual(out.headers["upload-offset"], String(SIZE));
        assert.strictEqual(out.headers["tus-resumable"], "1.0.0");
        const sha384 = /(?:^|,)\s*sha384 ([A-Za-z0-9+/=]+)/.exec(
          out.headers["upload-metadata"] ?? "",
        )?.[1];
        assert.ok(sha384, text);
        const hash = atob(sha384);
        assert.strictEqual(hash, out.sha384);
        assert.strictEqual(out.headers["content-location"], `/blobs/${hash}`);

        // The blob, by that hash, from the server: the page's bytes.
        const res = await fetch(`${server.base}/blobs/${hash}`);
        assert.strictEqual(res.status, 200);
        const digest = createHash("sha384");
        let size = 0;
        for await (const chunk of res.body!) {
          digest.update(chunk);
          size += chunk.length;
        }
        assert.strictEqual(size, SIZE);
        assert.strictEqual(digest.digest("hex"), out.sha384);
        console.error(
          `  ${log.length} requests (${
            log.filter((e) => e.status === 0).length
          } failed), upload ${out.ms} ms, page ${ms} ms`,
        );
      } finally {
        await proxy.close();
        await server.kill();
        await page.shutdown();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
