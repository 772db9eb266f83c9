/**
 * Headless Chromium for the real-browser tests (tests/browser_test.ts,
 * tests/browser_tus_test.ts): pages served from a loopback origin of their
 * own, and a browser that loads one and hands back what it computed.
 *
 * The browser is driven over the DevTools protocol with Deno's WebSocket,
 * one launch per page, on a temporary profile, able to reach 127.0.0.1
 * only, and ended by its pid. It is Debian's `chromium`, which `deno task
 * test` installs through scripts/chromium.sh (or `CHROMIUM_BIN`); without
 * it the suites skip with a message, or fail in CI.
 *
 * @module
 */

import { serviceAvailable } from "./services.ts";

/** The browser: `CHROMIUM_BIN`, else Debian's. */
export const CHROMIUM = Deno.env.get("CHROMIUM_BIN") ?? "/usr/bin/chromium";
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

/**
 * Whether the browser is there: use as `ignore: !chromiumAvailable`.
 * Without it the suites skip with a message, or fail in CI.
 */
export const chromiumAvailable = await serviceAvailable(
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

// ---- the browser ----

/** Rejects after `ms` (default STEP_TIMEOUT_MS); its timer is cleared either way. */
export async function within<T>(
  promise: Promise<T>,
  what: string,
  ms = STEP_TIMEOUT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out: ${what}`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
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

  send(
    method: string,
    params = {},
    sessionId?: string,
    timeoutMs = STEP_TIMEOUT_MS,
    // deno-lint-ignore no-explicit-any
  ): Promise<any> {
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
      timeoutMs,
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
 * `globalThis.outcome` resolves to, waiting for it up to `outcomeMs`
 * (default 20 s, as every other step). The browser, its helpers and its
 * profile are gone when this returns.
 */
export async function runPage(
  url: string,
  { outcomeMs = STEP_TIMEOUT_MS }: { outcomeMs?: number } = {},
  // deno-lint-ignore no-explicit-any
): Promise<any> {
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
    const evaluated = await cdp.send(
      "Runtime.evaluate",
      {
        expression: "globalThis.outcome",
        awaitPromise: true,
        returnByValue: true,
      },
      sessionId,
      outcomeMs,
    );
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

// ---- pages ----

/** A file a page server serves: its text and its content type. */
export interface PageFile {
  body: string;
  type: string;
}

/** The content type of HTML. */
export const HTML = "text/html; charset=utf-8";
/** The content type of scripts. */
export const JAVASCRIPT = "text/javascript; charset=utf-8";

/**
 * Serves `files` (by path: `"/"`, `"/page.js"`) on a loopback port of its
 * own: an origin of its own.
 */
export function pageServer(
  files: Record<string, PageFile>,
): Deno.HttpServer<Deno.NetAddr> & { origin: string } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (req) => {
      const { pathname } = new URL(req.url);
      const file = Object.hasOwn(files, pathname) ? files[pathname] : undefined;
      if (!file) return new Response("not found", { status: 404 });
      return new Response(file.body, {
        headers: { "content-type": file.type },
      });
    },
  );
  return Object.assign(server, {
    origin: `http://127.0.0.1:${server.addr.port}`,
  });
}
