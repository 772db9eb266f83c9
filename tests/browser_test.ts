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
import { serviceAvailable } from "./services.ts";

const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless=new",
  "--no-sandbox", // as root, Chromium refuses to start without it
  "--disable-gpu",
  "--no-first-run",
  "--disable-dev-shm-usage", // a container's /dev/shm is small
  "--disable-background-networking",
  // Every name resolves to nothing: the browser reaches 127.0.0.1 only.
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];
/** The longest any one step (launch, load, the page's work, exit) may take. */
const STEP_TIMEOUT_MS = 20_000;
const TOKEN = "browser-test-token";
const PART_SIZE = 1024;

const available = await serviceAvailable(
  "headless Chromium",
  async () => {
    const info = await Deno.stat(CHROMIUM).catch(() => {
      throw new Error(
        `${CHROMIUM} not found (bash scripts/chromium.sh start installs it; or set CHROMIUM_BIN)`,
      );
    });
    if (!info.isFile) throw new Error(`${CHROMIUM} is not a file`);
  },
);

// ---- the page, and the service it calls ----

const PAGE_SCRIPT = await Deno.readTextFile(
  new URL("./fixtures/cors_page.js", import.meta.url),
);
const PAGE_HTML = `<!doctype html><meta charset="utf-8">
<title>blobstore CORS</title><script type="module" src="/cors_page.js"></script>`;

/** Serves the page on a loopback port of its own: an origin of its own. */
function pageServer(): Deno.HttpServer<Deno.NetAddr> & { origin: string } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const { pathname } = new URL(req.url);
      if (pathname === "/") {
        return new Response(PAGE_HTML, {
          headers: { "content-type": "text/html; charset=utf-8" },
        });
      }
      if (pathname === "/cors_page.js") {
        return new Response(PAGE_SCRIPT, {
          headers: { "content-type": "text/javascript; charset=utf-8" },
        });
      }
      return new Response("not found", { status: 404 });
    },
  );
  return Object.assign(server, {
    origin: `http://127.0.0.1:${server.addr.port}`,
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

// ---- the browser ----

/** Rejects after STEP_TIMEOUT_MS; its timer is cleared either way. */
async function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out: ${what}`)),
      STEP_TIMEOUT_MS,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The last few KiB of a stream, read to its end in the background. */
function tail(stream: ReadableStream<Uint8Array>) {
  let text = "";
  const decoder = new TextDecoder();
  const done = stream.pipeTo(
    new WritableStream({
      write(chunk) {
        text = (text + decoder.decode(chunk, { stream: true })).slice(-4096);
      },
    }),
  ).catch(() => {});
  return { done, text: () => text };
}

/**
 * Live processes (not zombies) whose command line mentions `needle`; none
 * where there is no /proc to tell (macOS with CHROMIUM_BIN).
 */
function processesMentioning(needle: string): number[] {
  const pids: number[] = [];
  let entries: Iterable<Deno.DirEntry>;
  try {
    entries = Deno.readDirSync("/proc");
  } catch {
    return pids;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const state = stat.slice(
        stat.lastIndexOf(")") + 2,
        stat.lastIndexOf(")") + 3,
      );
      if (cmdline.includes(needle) && state !== "Z") {
        pids.push(Number(entry.name));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

interface CdpMessage {
  id?: number;
  method?: string;
  sessionId?: string;
  params?: Record<string, unknown>;
  // deno-lint-ignore no-explicit-any
  result?: any;
  error?: { message: string };
}

/** A DevTools protocol connection: commands by id, events to listeners. */
class Cdp {
  #ws: WebSocket;
  #nextId = 0;
  #pending = new Map<number, (m: CdpMessage) => void>();
  #listeners = new Set<(m: CdpMessage) => void>();
  readonly closed: Promise<void>;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    this.closed = new Promise((resolve) =>
      ws.addEventListener("close", () => resolve())
    );
    ws.onmessage = (event) => {
      const message: CdpMessage = JSON.parse(event.data);
      if (message.id !== undefined) this.#pending.get(message.id)?.(message);
      else for (const listener of this.#listeners) listener(message);
    };
  }

  static async connect(url: string): Promise<Cdp> {
    const ws = new WebSocket(url);
    await within(
      new Promise((resolve, reject) => {
        ws.onopen = resolve;
        ws.onerror = () => reject(new Error(`cannot connect to ${url}`));
      }),
      "DevTools connection",
    );
    return new Cdp(ws);
  }

  // deno-lint-ignore no-explicit-any
  send(method: string, params = {}, sessionId?: string): Promise<any> {
    const id = ++this.#nextId;
    return within(
      new Promise((resolve, reject) => {
        this.#pending.set(id, (m) => {
          this.#pending.delete(id);
          if (m.error) reject(new Error(`${method}: ${m.error.message}`));
          else resolve(m.result);
        });
        this.#ws.send(JSON.stringify({ id, method, params, sessionId }));
      }),
      method,
    );
  }

  /** The first event `method` of `sessionId` from now on. */
  event(method: string, sessionId: string): Promise<CdpMessage> {
    return within(
      new Promise((resolve) => {
        const listener = (m: CdpMessage) => {
          if (m.method !== method || m.sessionId !== sessionId) return;
          this.#listeners.delete(listener);
          resolve(m);
        };
        this.#listeners.add(listener);
      }),
      method,
    );
  }

  /** Asks the browser to quit, without waiting for an answer it may not send. */
  closeBrowser(): void {
    if (this.#ws.readyState !== WebSocket.OPEN) return;
    this.#ws.send(
      JSON.stringify({ id: ++this.#nextId, method: "Browser.close" }),
    );
  }

  async close(): Promise<void> {
    if (this.#ws.readyState !== WebSocket.CLOSED) this.#ws.close();
    await within(this.closed, "DevTools connection close").catch(() => {});
  }
}

/**
 * Launches the browser, loads `url`, and returns what the page's
 * `globalThis.outcome` resolves to. The browser, its helpers and its
 * profile are gone when this returns.
 */
// deno-lint-ignore no-explicit-any
async function runPage(url: string): Promise<any> {
  const profile = await Deno.makeTempDir({ prefix: "blobstore-chromium-" });
  const child = new Deno.Command(CHROMIUM, {
    args: [
      ...CHROMIUM_ARGS,
      `--user-data-dir=${profile}`,
      "--remote-debugging-port=0",
      "about:blank",
    ],
    // Its temporary files (org.chromium.*) and its crash reporter's
    // (~/.config/chromium) go with the profile.
    env: { TMPDIR: profile, HOME: profile, XDG_CONFIG_HOME: profile },
    stdin: "null",
    stdout: "null",
    stderr: "piped", // kept for the error message (dbus noise included)
  }).spawn();
  const stderr = tail(child.stderr);
  let exited = false;
  const status = child.status.finally(() => exited = true);
  let cdp: Cdp | undefined;
  try {
    const endpoint = await within(
      devToolsEndpoint(profile, () => exited),
      "browser start",
    );
    cdp = await Cdp.connect(endpoint);
    const { targetId } = await cdp.send("Target.createTarget", {
      url: "about:blank",
    });
    const { sessionId } = await cdp.send("Target.attachToTarget", {
      targetId,
      flatten: true,
    });
    await cdp.send("Page.enable", {}, sessionId);
    const loaded = cdp.event("Page.loadEventFired", sessionId);
    const navigated = await cdp.send("Page.navigate", { url }, sessionId);
    if (navigated.errorText) {
      throw new Error(`cannot load ${url}: ${navigated.errorText}`);
    }
    await loaded;
    const evaluated = await cdp.send("Runtime.evaluate", {
      expression: "globalThis.outcome",
      awaitPromise: true,
      returnByValue: true,
    }, sessionId);
    if (evaluated.exceptionDetails) {
      throw new Error(
        `the page failed: ${JSON.stringify(evaluated.exceptionDetails)}`,
      );
    }
    return evaluated.result.value;
  } catch (err) {
    throw new Error(
      `${
        (err as Error).message
      }\n--- chromium's stderr (last lines):\n${stderr.text()}`,
      { cause: err },
    );
  } finally {
    cdp?.closeBrowser(); // a clean exit: a signal leaves temporary files behind
    await stop(child, status, () => exited);
    await cdp?.close();
    await stderr.done;
    await removeProfile(profile);
  }
}

/** The browser's DevTools WebSocket URL, from `<profile>/DevToolsActivePort`. */
async function devToolsEndpoint(
  profile: string,
  exited: () => boolean,
): Promise<string> {
  for (;;) {
    if (exited()) throw new Error("the browser exited at start");
    const text = await Deno.readTextFile(`${profile}/DevToolsActivePort`).catch(
      () => "",
    );
    const [port, path] = text.split("\n");
    if (port && path) return `ws://127.0.0.1:${port}${path}`;
    await sleep(25);
  }
}

/** Waits for the browser to quit, then SIGTERM, then SIGKILL: by its own pid only. */
async function stop(
  child: Deno.ChildProcess,
  status: Promise<unknown>,
  exited: () => boolean,
): Promise<void> {
  for (
    const [graceMs, signal] of [[5000, "SIGTERM"], [3000, "SIGKILL"]] as const
  ) {
    for (let waited = 0; waited < graceMs && !exited(); waited += 25) {
      await sleep(25);
    }
    if (exited()) break;
    try {
      child.kill(signal);
    } catch {
      // exited meanwhile
    }
  }
  await status;
}

/** Ends the browser's helpers still running on `profile` (by pid), then removes it. */
async function removeProfile(profile: string): Promise<void> {
  for (let i = 0; i < 40 && processesMentioning(profile).length > 0; i++) {
    await sleep(50);
  }
  for (const pid of processesMentioning(profile)) {
    console.warn(`browser_test: killing leftover browser process ${pid}`);
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  await Deno.remove(profile, { recursive: true }).catch(() => {});
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
