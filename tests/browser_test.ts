/**
 * CORS in a real browser: headless Chromium loads a page from one loopback
 * origin, and the page calls the blobstore service on another with fetch
 * (tests/fixtures/cors_page.js). From an allowed origin it puts a blob
 * whose hash it computed, reads a range, a 304, errors, and runs a
 * multipart upload, reading the exposed headers as it goes; from another
 * origin the browser itself refuses (the service sees the preflight, and
 * nothing after it).
 *
 * The browser is driven over the DevTools protocol with Deno's WebSocket,
 * one launch per case, on a temporary profile, able to reach 127.0.0.1
 * only, and ended by its pid. It is Debian's `chromium`, which `deno task
 * test` installs through scripts/chromium.sh (or `CHROMIUM_BIN`); without
 * it the suite skips with a message, or fails in CI.
 */

import assert from "node:assert";
import { MemoryBackend, MemoryCatalog, Store } from "../mod.ts";
import { bearerToken, createHandler } from "../http.ts";
import {
  chromiumAvailable as available,
  HTML,
  JAVASCRIPT,
  pageServer as servePages,
  runPage,
  within,
} from "./browser.ts";

const TOKEN = "browser-test-token";
const PART_SIZE = 1024;

// ---- the page, and the service it calls ----

const PAGE_SCRIPT = await Deno.readTextFile(
  new URL("./fixtures/cors_page.js", import.meta.url),
);
const PAGE_HTML = `<!doctype html><meta charset="utf-8">
<title>blobstore CORS</title><script type="module" src="/cors_page.js"></script>`;

/** Serves the page on a loopback port of its own: an origin of its own. */
function pageServer() {
  return servePages({
    "/": { body: PAGE_HTML, type: HTML },
    "/cors_page.js": { body: PAGE_SCRIPT, type: JAVASCRIPT },
  });
}

interface Logged {
  method: string;
  path: string;
  origin: string | null;
}

/** The service on a loopback port, CORS for `origins`, logging every request. */
function serviceFor(origins: string[]) {
  const log: Logged[] = [];
  const errors: unknown[] = [];
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
    minPartSize: PART_SIZE,
  });
  const handler = createHandler(store, {
    authorize: bearerToken(TOKEN),
    cors: { origins, maxAge: 0 },
    onError: (err) => errors.push(err),
  });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req, info) => {
      log.push({
        method: req.method,
        path: new URL(req.url).pathname,
        origin: req.headers.get("origin"),
      });
      return handler(req, info);
    },
  );
  return { server, log, errors, base: `http://127.0.0.1:${server.addr.port}` };
}

function pageURL(
  page: { origin: string },
  api: string,
  steps = "put,range,multipart",
): string {
  const query = new URLSearchParams({
    api,
    token: TOKEN,
    steps,
    partSize: String(PART_SIZE),
  });
  return `${page.origin}/?${query}`;
}

// ---- the cases ----

Deno.test({
  name:
    "browser: a page on an allowed origin puts, reads ranges and uploads in parts, reading the exposed headers",
  ignore: !available,
  async fn() {
    const page = pageServer();
    const service = serviceFor([page.origin]);
    try {
      const started = performance.now();
      const out = await runPage(pageURL(page, service.base));
      const ms = Math.round(performance.now() - started);
      assert.strictEqual(out.error, undefined, JSON.stringify(out, null, 2));
      assert.strictEqual(out.origin, page.origin);
      const { hash } = out;
      const etag = `"${hash}"`;

      // PUT with Authorization, after a preflight: ETag and Location readable.
      assert.strictEqual(out.put.status, 201);
      assert.strictEqual(out.put.headers.etag, etag);
      assert.strictEqual(out.put.headers.location, `/blobs/${hash}`);
      assert.deepStrictEqual(out.put.body, { hash, size: 35 });

      // A range: 206 with every validator readable.
      assert.strictEqual(out.range.status, 206);
      assert.strictEqual(out.range.body, "from");
      assert.strictEqual(out.range.headers["content-range"], "bytes 6-9/35");
      assert.strictEqual(out.range.headers["content-length"], "4");
      assert.strictEqual(out.range.headers.etag, etag);
      assert.match(
        out.range.headers["repr-digest"],
        /^sha-384=:[A-Za-z0-9+/]{64}:$/,
      );
      assert.strictEqual(out.range.headers["accept-ranges"], "bytes");

      // A 304, a 404 and a 401 reach the page too, with their headers.
      assert.strictEqual(out.notModified.status, 304);
      assert.strictEqual(out.notModified.headers.etag, etag);
      assert.strictEqual(out.missing.status, 404);
      assert.strictEqual(out.missing.body.error, "not_found");
      assert.strictEqual(out.unauthorized.status, 401);
      assert.strictEqual(out.unauthorized.body.error, "unauthorized");
      // ...and a header the service does not expose stays hidden.
      assert.strictEqual(
        out.unauthorized.headers["www-authenticate"],
        undefined,
      );

      // The multipart upload, every step of it readable.
      assert.strictEqual(out.upload.status, 201);
      assert.strictEqual(
        out.upload.headers.location,
        `/uploads/${out.upload.body.id}`,
      );
      assert.deepStrictEqual(
        out.parts.map((p: { status: number }) => p.status),
        [200, 200],
      );
      assert.strictEqual(out.finish.status, 200);
      assert.strictEqual(out.finish.body.hash, out.wholeHash);
      assert.strictEqual(out.finish.body.size, PART_SIZE + 17);
      assert.strictEqual(
        out.finish.headers.location,
        `/blobs/${out.wholeHash}`,
      );
      // The whole blob by its hash, and a range across the parts.
      assert.strictEqual(out.multipartGet.status, 200);
      assert.deepStrictEqual(out.multipartGet.body, {
        size: out.wholeSize,
        sha384: out.wholeHash,
      });
      assert.strictEqual(out.multipartGet.headers.etag, `"${out.wholeHash}"`);
      assert.strictEqual(
        out.multipartGet.headers["content-length"],
        String(out.wholeSize),
      );
      assert.ok(out.multipartGet.headers["repr-digest"]);
      assert.strictEqual(out.multipartRange.status, 206);
      assert.strictEqual(
        out.multipartRange.headers["content-range"],
        `bytes ${PART_SIZE - 3}-${PART_SIZE + 3}/${out.wholeSize}`,
      );
      assert.strictEqual(
        out.multipartRange.body.sha384,
        out.multipartRangeExpected,
      );

      // The browser preflighted the requests that needed it, and the
      // service answered them without asking for the token.
      const preflights = service.log.filter((l) => l.method === "OPTIONS");
      assert.ok(
        preflights.some((l) => l.path === `/blobs/${hash}`),
        JSON.stringify(service.log),
      );
      assert.ok(preflights.every((l) => l.origin === page.origin));
      assert.deepStrictEqual(service.errors, []);
      console.log(
        `browser: allowed origin, ${service.log.length} requests, ${ms} ms`,
      );
    } finally {
      await Promise.all([page.shutdown(), service.server.shutdown()]);
    }
  },
});

Deno.test({
  name:
    "browser: a page on another origin is refused by the browser after the preflight",
  ignore: !available,
  async fn() {
    const allowed = pageServer();
    const other = pageServer();
    const service = serviceFor([allowed.origin]);
    try {
      const started = performance.now();
      const out = await runPage(pageURL(other, service.base, "put"));
      const ms = Math.round(performance.now() - started);
      assert.match(out.error ?? "", /^TypeError: /, JSON.stringify(out));
      assert.strictEqual(out.put, undefined);
      // The browser asked, was told no, and sent nothing more.
      const fromOther = service.log.filter((l) => l.origin === other.origin);
      assert.deepStrictEqual(fromOther, [{
        method: "OPTIONS",
        path: `/blobs/${out.hash}`,
        origin: other.origin,
      }]);
      assert.deepStrictEqual(service.log, fromOther);
      console.log(`browser: other origin refused, ${ms} ms`);
    } finally {
      await Promise.all([
        allowed.shutdown(),
        other.shutdown(),
        service.server.shutdown(),
      ]);
    }
  },
});

// ---- `deno task start` with --cors-origin and BLOBSTORE_CORS_ORIGINS ----

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** `serve --memory --port 0` with `args` and `env`, once it listens. */
async function startServe(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      MAIN,
      "serve",
      "--memory",
      "--port",
      "0",
      ...args,
    ],
    env: { BLOBSTORE_TOKEN: TOKEN, ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const read = async () => {
    while (!/\(CORS\)\n|blobstore: stopped/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
  };
  try {
    await within(read(), "serve start");
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  const port = text.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
  const drained = (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  return {
    base: port && `http://127.0.0.1:${port}`,
    printed: text,
    async stop() {
      child.kill("SIGTERM");
      const { code } = await child.status;
      await drained;
      assert.strictEqual(code, 0, text);
    },
  };
}

Deno.test({
  name:
    "browser: deno task start --cors-origin lets the page in (the flag over BLOBSTORE_CORS_ORIGINS)",
  ignore: !available,
  async fn() {
    const page = pageServer();
    const serve = await startServe(
      ["--cors-origin", `https://elsewhere.example,${page.origin}`],
      { BLOBSTORE_CORS_ORIGINS: "https://env-only.example" },
    );
    try {
      assert.ok(serve.base, serve.printed);
      assert.match(
        serve.printed,
        new RegExp(
          `browsers may call it from https://elsewhere\\.example, ${page.origin} \\(CORS\\)`,
        ),
      );
      const started = performance.now();
      const out = await runPage(pageURL(page, serve.base, "put,range"));
      const ms = Math.round(performance.now() - started);
      assert.strictEqual(out.error, undefined, JSON.stringify(out, null, 2));
      assert.strictEqual(out.put.status, 201);
      assert.strictEqual(out.put.headers.etag, `"${out.hash}"`);
      assert.strictEqual(out.range.status, 206);
      assert.strictEqual(out.range.headers["content-range"], "bytes 6-9/35");
      assert.strictEqual(out.unauthorized.status, 401);
      console.log(`browser: serve --cors-origin, ${ms} ms`);
    } finally {
      await Promise.all([page.shutdown(), serve.stop()]);
    }
  },
});

Deno.test("serve: BLOBSTORE_CORS_ORIGINS alone turns CORS on (a preflight, without a browser)", async () => {
  const origin = "https://app.example";
  const serve = await startServe([], { BLOBSTORE_CORS_ORIGINS: ` ${origin} ` });
  try {
    assert.ok(serve.base, serve.printed);
    assert.match(
      serve.printed,
      /browsers may call it from https:\/\/app\.example \(CORS\)/,
    );
    const res = await fetch(`${serve.base}/blobs/${"0".repeat(96)}`, {
      method: "OPTIONS",
      headers: {
        origin,
        "access-control-request-method": "PUT",
        "access-control-request-headers": "authorization",
      },
    });
    await res.body?.cancel();
    assert.strictEqual(res.status, 204);
    assert.strictEqual(res.headers.get("access-control-allow-origin"), origin);
  } finally {
    await serve.stop();
  }
});
