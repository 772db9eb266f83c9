/**
 * `main.ts serve` (what `deno task start` runs) as a subprocess on
 * 127.0.0.1, on the embedded default in a given data directory, for the
 * tests that need the real server: killed and restarted on the same data,
 * reached through a proxy, called from a browser.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Keeps the server on the embedded default whatever the outer environment says. */
const ENV = {
  BLOBSTORE_TOKEN: "",
  BLOBSTORE_DATA: "",
  BLOBSTORE_REDIRECT: "",
  BLOBSTORE_METRICS: "",
  BLOBSTORE_CORS_ORIGINS: "",
  BLOBSTORE_TUS_PREFIX: "",
  BLOBSTORE_MAX_PARTS: "",
  MONGODB_URL: "",
  SWIFT_AUTH_URL: "",
  S3_BUCKET: "",
  NO_COLOR: "1",
};

/** A running server. */
export interface ServerProcess {
  /** The port it listens on. */
  port: number;
  /** `http://127.0.0.1:<port>`. */
  base: string;
  pid: number;
  /** What it printed on standard error so far. */
  printed(): string;
  /** Kills it with `signal` (default SIGKILL: a crash) and waits for it to exit. */
  kill(signal?: Deno.Signal): Promise<void>;
  /** SIGTERM, and its exit. */
  stop(): Promise<void>;
}

/**
 * Starts `main.ts serve --port 0 --data <data> …args` and resolves once it
 * listens; rejects with what it printed if it exits first or takes more
 * than 30 s.
 */
export async function startServer(
  data: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<ServerProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      MAIN,
      "serve",
      "--port",
      "0",
      "--data",
      data,
      ...args,
    ],
    env: { ...ENV, ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let exited = false;
  const status = child.status.finally(() => exited = true);
  let text = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let port: number | undefined;
  const timer = setTimeout(() => {
    if (!exited) child.kill("SIGKILL");
  }, 30_000);
  try {
    while (port === undefined) {
      const { value, done } = await reader.read();
      if (done) {
        await status;
        throw new Error(`the server exited before listening: ${text.trim()}`);
      }
      text += value;
      const match = text.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
      if (match) port = Number(match[1]);
    }
  } finally {
    clearTimeout(timer);
  }
  const drained = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += value;
    }
  })().catch(() => {});
  const kill = async (signal: Deno.Signal = "SIGKILL") => {
    if (!exited) {
      try {
        child.kill(signal);
      } catch {
        // exited meanwhile
      }
    }
    await status;
    await drained;
  };
  return {
    port,
    base: `http://127.0.0.1:${port}`,
    pid: child.pid,
    printed: () => text,
    kill,
    stop: () => kill("SIGTERM"),
  };
}
