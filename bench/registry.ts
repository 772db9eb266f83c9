/**
 * The HTTP service against a peer: the Docker/OCI registry (CNCF
 * Distribution v3.1.2), which also stores content-addressed blobs over
 * HTTP. Both run on loopback with file-system storage, each in a process
 * of its own, and one client (this process, Deno's `fetch`) sends both the
 * same bytes:
 *
 * - upload of a 256 MiB blob: ours `PUT /blobs/{sha384}`; the registry
 *   `POST /v2/<repo>/blobs/uploads/`, then `PUT <location>&digest=sha256:…`
 *   with the body (its monolithic upload);
 * - the same in 8 MiB parts: ours `POST /uploads`, `PUT
 *   /uploads/{id}/parts/{n}?hash=…&offset=…` for each part in turn and
 *   `POST /uploads/{id}/finish`; the registry `POST`, one `PATCH` per chunk
 *   with its `Content-Range` (following each answer's `Location`), then a
 *   `PUT …&digest=` without a body;
 * - download of a 256 MiB blob: `GET /blobs/{sha384}` vs `GET
 *   /v2/<repo>/blobs/sha256:…`;
 * - 1,000 uploads of 4 KiB, 16 at a time (ours one `PUT` each, the
 *   registry `POST` + `PUT` each), and 1,000 downloads of 4 KiB, 16 at a
 *   time.
 *
 * The registry is the baseline column, so the ratio ours / registry of the
 * rates is the registry's time over ours: above 1, ours is faster. Targets:
 * 1.0 on the large-blob rows, 2.0 on the small-blob rows. Every upload
 * round sends new bytes (each part of a large blob and each small blob
 * marked with the round), hashed before the round starts (SHA-384 for
 * ours, SHA-256 for the registry), so nothing is deduplicated; each
 * upload is checked (status, and the hash the server reports). Each row's
 * note gives both medians as times, and both servers' peak RSS during the
 * row (VmHWM of each process, reset before each timed call through
 * `/proc/<pid>/clear_refs`, else VmRSS sampled every 10 ms) beside their
 * RSS before the first round; the table's peak RSS growth column is the
 * client's, as in every suite (`fetch` copies each body it sends).
 *
 * Ours is `main.ts serve` (as `deno task start` runs it) on the embedded
 * default (Deno KV catalog, file backend) in a temporary directory. The
 * registry is built by `scripts/registry.sh build` (`go install …@v3.1.2`
 * into `.state/bin/`, once) with the configuration of `scripts/registry.sh
 * config` (file-system storage in a temporary directory, no auth, errors
 * only, no access log), tracing export off (`OTEL_TRACES_EXPORTER=none`:
 * nothing listens for it). Without Go the suite is skipped, saying so.
 *
 * Rows of our own on the same server and bytes, each against `PUT
 * /blobs/{sha384}` (all through the same `fetch`): a tus 1.0.0 upload
 * (`POST /tus/` then `PATCH` with `Upload-Offset`) in one `PATCH` (target
 * 0.9) and in 8 MiB `PATCH`es (reported), and `POST /blobs`, whose hash
 * the server computes (target 0.95). Their notes give the server's CPU
 * time per MiB on each side, measured in the same rounds (`/proc/<pid>/stat`),
 * and what the extra hashing costs: a tus or `POST` upload hashes each
 * byte twice (its 8 MiB part's own hash, and the running hash of the
 * whole), a `PUT` once. Without Go these rows still run (the registry's
 * are skipped, saying so).
 *
 * Standalone: `deno run -A --unstable-kv bench/registry.ts [--quick]`
 * (`--quick`: 32 MiB, 100 small blobs, one round). `registrySuite` plugs
 * into `bench/main.ts`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { hashSpeed } from "./bound.ts";
import type { BenchCase, BenchRow, BenchSuite } from "./harness.ts";
import { standalone } from "./run.ts";

const KiB = 2 ** 10;
const MiB = 2 ** 20;

/** The registry version `scripts/registry.sh` builds. */
const REGISTRY = "registry v3.1.2";
/** The repository the registry stores the blobs in. */
const REPO = "bench";
/** Part (chunk) size of the chunked upload rows. */
const PART = 8 * MiB;
/** Size of each small blob. */
const SMALL = 4 * KiB;
/** Requests in flight in the small-blob rows. */
const CONCURRENCY = 16;

const root = new URL("..", import.meta.url).pathname;

/** One of the two servers, in a process of its own. */
interface Server {
  /** `http://127.0.0.1:<port>`. */
  base: string;
  pid: number;
  stop(): Promise<void>;
}

/** Forwards a child's output lines to our stderr, prefixed. */
async function forward(
  lines: ReadableStream<string>,
  prefix: string,
): Promise<void> {
  let rest = "";
  try {
    for await (const text of lines) {
      rest += text;
      const parts = rest.split("\n");
      rest = parts.pop()!;
      for (const line of parts) console.error(`${prefix}: ${line}`);
    }
  } catch {
    // The child went away.
  }
  if (rest) console.error(`${prefix}: ${rest}`);
}

/**
 * Our server: `main.ts serve --port 0` with the embedded default in
 * `data`, no token, no redirect, CORS or metrics.
 */
async function startOurs(data: string): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", "main.ts", "serve", "--port", "0"],
    cwd: root,
    env: {
      BLOBSTORE_DATA: data,
      BLOBSTORE_TOKEN: "",
      BLOBSTORE_REDIRECT: "",
      BLOBSTORE_METRICS: "",
      BLOBSTORE_CORS_ORIGINS: "",
      MONGODB_URL: "",
      SWIFT_AUTH_URL: "",
      S3_BUCKET: "",
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const lines = child.stderr.pipeThrough(new TextDecoderStream());
  const reader = lines.getReader();
  let text = "";
  let port: number | undefined;
  while (port === undefined) {
    const { value, done } = await reader.read();
    if (done) {
      await child.status;
      throw new Error(`our server exited before listening: ${text.trim()}`);
    }
    text += value;
    const match = text.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//);
    if (match) port = Number(match[1]);
  }
  reader.releaseLock();
  const forwarded = forward(lines, "blobstore server");
  return {
    base: `http://127.0.0.1:${port}`,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await forwarded;
    },
  };
}

/** A port free on 127.0.0.1 a moment ago. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/**
 * Builds the registry if needed (`scripts/registry.sh build`): its path,
 * or why not (no Go, a failed build).
 */
async function buildRegistry(): Promise<{ bin: string } | string> {
  const { code, stdout } = await new Deno.Command("bash", {
    args: [`${root}scripts/registry.sh`, "build"],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (code === 3) return "Go not found (scripts/registry.sh build needs go)";
  if (code !== 0) {
    return `building the registry failed (scripts/registry.sh build exited ${code}; its output is above)`;
  }
  return { bin: new TextDecoder().decode(stdout).trim() };
}

/** The registry on a free port, storing under `dir`. */
async function startRegistry(bin: string, dir: string): Promise<Server> {
  const port = freePort();
  const config = await new Deno.Command("bash", {
    args: [`${root}scripts/registry.sh`, "config", `${dir}/storage`, `${port}`],
    stdin: "null",
  }).output();
  if (config.code !== 0) {
    throw new Error(new TextDecoder().decode(config.stderr).trim());
  }
  await Deno.writeFile(`${dir}/config.yml`, config.stdout);
  const child = new Deno.Command(bin, {
    args: ["serve", `${dir}/config.yml`],
    env: { OTEL_TRACES_EXPORTER: "none" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const forwarded = Promise.all([
    forward(child.stdout.pipeThrough(new TextDecoderStream()), "registry"),
    forward(child.stderr.pipeThrough(new TextDecoderStream()), "registry"),
  ]);
  let exited = false;
  child.status.then(() => exited = true);
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error("the registry exited during start-up");
    try {
      const res = await fetch(`${base}/v2/`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`the registry did not answer on ${base} within 30 s`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    base,
    pid: child.pid,
    async stop() {
      if (!exited) child.kill("SIGTERM");
      await child.status;
      await forwarded;
    },
  };
}

/**
 * A process's peak RSS over a stretch: VmHWM after resetting it through
 * `clear_refs` (Linux 4.0+), else the VmRSS sampled every 10 ms.
 */
class RssWatch {
  #pid: number;
  #reset = false;
  #peak = 0;
  #timer?: ReturnType<typeof setInterval>;

  constructor(pid: number) {
    this.#pid = pid;
  }

  #read(field: "VmRSS" | "VmHWM"): number {
    const status = Deno.readTextFileSync(`/proc/${this.#pid}/status`);
    const match = status.match(new RegExp(`${field}:\\s+(\\d+) kB`));
    return match ? Number(match[1]) / 1024 : 0;
  }

  /** The RSS now, in MiB. */
  now(): number {
    return this.#read("VmRSS");
  }

  start(): void {
    try {
      Deno.writeTextFileSync(`/proc/${this.#pid}/clear_refs`, "5");
      this.#reset = true;
    } catch {
      this.#reset = false;
    }
    this.#peak = this.now();
    this.#timer = setInterval(() => {
      this.#peak = Math.max(this.#peak, this.now());
    }, 10);
  }

  /** Stops watching; the peak since `start`, in MiB. */
  stop(): number {
    clearInterval(this.#timer);
    const last = this.#reset ? this.#read("VmHWM") : this.now();
    return Math.max(this.#peak, last);
  }
}

/** Fails unless `res` has one of `statuses`; reads its body. */
async function expect(
  res: Response,
  statuses: number[],
  what: string,
): Promise<Response> {
  if (!statuses.includes(res.status)) {
    const text = await res.text().catch(() => "");
    throw new Error(`${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  }
  return res;
}

/** Reads a stream to its end; the byte count. */
async function drain(body: ReadableStream<Uint8Array>): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += chunk.byteLength;
  return n;
}

async function download(url: string, size: number): Promise<void> {
  const res = await expect(await fetch(url), [200], `GET ${url}`);
  const got = await drain(res.body!);
  if (got !== size) throw new Error(`GET ${url}: ${got} bytes of ${size}`);
}

// Ours.

async function oursPut(
  base: string,
  hash: string,
  body: Uint8Array<ArrayBuffer>,
) {
  const res = await fetch(`${base}/blobs/${hash}`, { method: "PUT", body });
  const stored = await (await expect(res, [201], `PUT /blobs/${hash}`))
    .json() as { hash?: string };
  if (stored.hash !== hash) {
    throw new Error(`PUT /blobs/${hash}: answered hash ${stored.hash}`);
  }
}

async function oursMultipart(
  base: string,
  bytes: Uint8Array<ArrayBuffer>,
  hashes: LargeHashes,
) {
  const created = await expect(
    await fetch(`${base}/uploads`, { method: "POST" }),
    [201],
    "POST /uploads",
  );
  const { id } = await created.json() as { id: string };
  for (let n = 0; n * PART < bytes.length; n++) {
    const res = await fetch(
      `${base}/uploads/${id}/parts/${n}?hash=${hashes.parts384![n]}&offset=${
        n * PART
      }`,
      { method: "PUT", body: bytes.subarray(n * PART, (n + 1) * PART) },
    );
    await (await expect(res, [200], `PUT part ${n}`)).arrayBuffer();
  }
  const finished = await expect(
    await fetch(`${base}/uploads/${id}/finish`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        parts: hashes.parts384!.map((hash) => ({ hash })),
      }),
    }),
    [200],
    `POST /uploads/${id}/finish`,
  );
  const { hash } = await finished.json() as { hash: string };
  if (hash !== hashes.sha384) {
    throw new Error(`finish: hash ${hash}, expected ${hashes.sha384}`);
  }
}

/** `POST /tus/` for `size` bytes: the upload's URL. */
async function tusCreate(base: string, size: number): Promise<string> {
  const res = await expect(
    await fetch(`${base}/tus/`, {
      method: "POST",
      headers: { ...TUS, "upload-length": String(size) },
    }),
    [201],
    "POST /tus/",
  );
  await res.arrayBuffer();
  const location = res.headers.get("location");
  if (!location) throw new Error("POST /tus/: 201 without a Location");
  return new URL(location, base).href;
}

/**
 * A tus upload of `bytes`: `POST /tus/`, then `PATCH`es of `chunk` bytes
 * (all of them in one by default), each at the offset the last answered;
 * the last answer's `Upload-Metadata` must name `hash`.
 */
async function tusUpload(
  base: string,
  bytes: Uint8Array<ArrayBuffer>,
  hash: string,
  chunk = bytes.length,
) {
  const url = await tusCreate(base, bytes.length);
  let offset = 0;
  let res: Response | undefined;
  while (offset < bytes.length) {
    res = await expect(
      await fetch(url, {
        method: "PATCH",
        headers: {
          ...TUS,
          "content-type": "application/offset+octet-stream",
          "upload-offset": String(offset),
        },
        body: bytes.subarray(offset, Math.min(offset + chunk, bytes.length)),
      }),
      [204],
      `PATCH at ${offset}`,
    );
    await res.arrayBuffer();
    offset = Number(res.headers.get("upload-offset"));
  }
  const metadata = res?.headers.get("upload-metadata") ?? "";
  const named = /(?:^|,)\s*sha384 ([A-Za-z0-9+/=]+)/.exec(metadata)?.[1];
  if (!named || atob(named) !== hash) {
    throw new Error(
      `tus upload: Upload-Metadata ${metadata}, expected ${hash}`,
    );
  }
}

/** `POST /blobs` of `bytes`: the server computes the hash, which must be `hash`. */
async function oursPost(
  base: string,
  hash: string,
  body: Uint8Array<ArrayBuffer>,
) {
  const res = await fetch(`${base}/blobs`, { method: "POST", body });
  const stored = await (await expect(res, [201], "POST /blobs"))
    .json() as { hash?: string };
  if (stored.hash !== hash) {
    throw new Error(
      `POST /blobs: answered hash ${stored.hash}, expected ${hash}`,
    );
  }
}

const TUS = { "tus-resumable": "1.0.0" };

/** The clock ticks a second of `/proc/<pid>/stat` counts (`getconf CLK_TCK`). */
const CLOCK_TICKS = await (async () => {
  try {
    const { stdout } = await new Deno.Command("getconf", {
      args: ["CLK_TCK"],
      stderr: "null",
    }).output();
    return Number(new TextDecoder().decode(stdout).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** A process's user + system CPU time so far, in ms (0 where there is no /proc). */
function processCpuMs(pid: number): number {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

// The registry.

const OCTETS = { "content-type": "application/octet-stream" };

/** `POST /v2/<repo>/blobs/uploads/`: the upload's URL. */
async function registryStart(base: string): Promise<URL> {
  const res = await expect(
    await fetch(`${base}/v2/${REPO}/blobs/uploads/`, { method: "POST" }),
    [202],
    "POST /v2/…/blobs/uploads/",
  );
  await res.arrayBuffer();
  return locationOf(res, base);
}

function locationOf(res: Response, base: string): URL {
  const location = res.headers.get("location");
  if (!location) throw new Error(`HTTP ${res.status} without a Location`);
  return new URL(location, base);
}

/** `PUT <upload>&digest=sha256:…`, with `body` or none. */
async function registryCommit(
  upload: URL,
  sha256: string,
  body?: Uint8Array<ArrayBuffer>,
): Promise<void> {
  upload.searchParams.set("digest", `sha256:${sha256}`);
  const res = await fetch(upload, {
    method: "PUT",
    headers: OCTETS,
    body: body ?? new Uint8Array(0),
  });
  await (await expect(res, [201], "PUT upload ?digest=")).arrayBuffer();
  const digest = res.headers.get("docker-content-digest");
  if (digest !== `sha256:${sha256}`) {
    throw new Error(`PUT upload: digest ${digest}, expected sha256:${sha256}`);
  }
}

async function registryPut(
  base: string,
  sha256: string,
  body: Uint8Array<ArrayBuffer>,
) {
  await registryCommit(await registryStart(base), sha256, body);
}

async function registryChunked(
  base: string,
  bytes: Uint8Array<ArrayBuffer>,
  sha256: string,
) {
  let upload = await registryStart(base);
  for (let start = 0; start < bytes.length; start += PART) {
    const end = Math.min(start + PART, bytes.length);
    const res = await fetch(upload, {
      method: "PATCH",
      headers: { ...OCTETS, "content-range": `${start}-${end - 1}` },
      body: bytes.subarray(start, end),
    });
    await (await expect(res, [202], `PATCH ${start}-${end - 1}`))
      .arrayBuffer();
    upload = locationOf(res, base);
  }
  await registryCommit(upload, sha256);
}

function registryBlobUrl(base: string, sha256: string): string {
  return `${base}/v2/${REPO}/blobs/sha256:${sha256}`;
}

// The bytes.

/** `size` random bytes. */
function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, Math.min(at + 65536, size)));
  }
  return bytes;
}

interface LargeHashes {
  sha384: string;
  sha256: string;
  /** Each part's SHA-384, when asked for. */
  parts384?: string[];
}

/**
 * Makes `bytes` blob number `variant` (the variant written at the start
 * of every part, so no part repeats one of another round) and hashes it.
 */
function markLarge(
  bytes: Uint8Array<ArrayBuffer>,
  variant: number,
  parts: boolean,
): LargeHashes {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const whole384 = createHash("sha384");
  const whole256 = createHash("sha256");
  const parts384: string[] = [];
  for (let at = 0; at < bytes.length; at += PART) {
    view.setFloat64(at, variant);
    const part = bytes.subarray(at, at + PART);
    whole384.update(part);
    whole256.update(part);
    if (parts) parts384.push(createHash("sha384").update(part).digest("hex"));
  }
  return {
    sha384: whole384.digest("hex"),
    sha256: whole256.digest("hex"),
    ...(parts ? { parts384 } : {}),
  };
}

interface SmallBlob {
  bytes: Uint8Array<ArrayBuffer>;
  sha384: string;
  sha256: string;
}

/** `count` new random blobs of 4 KiB, hashed. */
function smallBlobs(count: number): SmallBlob[] {
  return Array.from({ length: count }, () => {
    const bytes = randomBytes(SMALL);
    return {
      bytes,
      sha384: createHash("sha384").update(bytes).digest("hex"),
      sha256: createHash("sha256").update(bytes).digest("hex"),
    };
  });
}

/** Runs `task(0…count-1)` with `concurrency` in flight. */
async function inParallel(
  count: number,
  concurrency: number,
  task: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

/** A hash's speed alone here, in MB/s (node:crypto, 8 MiB updates). */
function hashAlone(algorithm: string, bytes: Uint8Array): number {
  const start = performance.now();
  const hash = createHash(algorithm);
  for (let at = 0; at < bytes.length; at += PART) {
    hash.update(bytes.subarray(at, at + PART));
  }
  hash.digest();
  return bytes.length / 1e6 / ((performance.now() - start) / 1000);
}

let cleanup: (() => Promise<void>) | undefined;

/** Both servers' RSS at the end of the run, and whether VmHWM was reset. */
const serverRss: { ours?: number; registry?: number } = {};

/** The cases: our HTTP service vs the registry, same client, same bytes. */
export const registrySuite: BenchSuite = {
  name: "registry",
  async open({ quick }) {
    const built = await buildRegistry();
    if (typeof built === "string") {
      console.error(
        `registry suite: ${built}; only the rows without the registry run`,
      );
    }
    const size = quick ? 32 * MiB : 256 * MiB;
    const count = quick ? 100 : 1000;
    const dir = await Deno.makeTempDir({ prefix: "blobstore-bench-registry-" });
    const servers: Server[] = [];
    cleanup = async () => {
      if (servers.length === 2) {
        serverRss.ours = new RssWatch(servers[0].pid).now();
        serverRss.registry = new RssWatch(servers[1].pid).now();
      }
      for (const server of servers) await server.stop();
      await Deno.remove(dir, { recursive: true });
    };
    await Deno.mkdir(`${dir}/ours`);
    await Deno.mkdir(`${dir}/registry`);
    servers.push(await startOurs(`${dir}/ours`));
    if (typeof built !== "string") {
      servers.push(await startRegistry(built.bin, `${dir}/registry`));
    }
    const [ours, registry] = servers;

    console.error(`generating ${size / MiB} MiB of random bytes…`);
    const bytes = randomBytes(size);
    const speeds = {
      sha384: hashAlone("sha384", bytes),
      sha256: hashAlone("sha256", bytes),
    };
    let variant = 0;

    // Our own bound, in the same run: the upload against SHA-384 alone
    // over the same bytes (the least work a verified put does).
    let bound: LargeHashes | undefined;
    const boundCase: BenchCase = {
      name:
        "HTTP upload PUT /blobs/{sha384} vs SHA-384 alone over the same bytes (node:crypto, in-process)",
      size,
      target: 0.9,
      beforeRound() {
        bound = markLarge(bytes, ++variant, false);
        return Promise.resolve();
      },
      ours: () => oursPut(ours.base, bound!.sha384, bytes),
      baseline() {
        hashAlone("sha384", bytes);
        return Promise.resolve();
      },
    };

    // Ours against ours: resumable and hash-less uploads vs PUT, each
    // side sending bytes of its own (a blob the other side stored would
    // be a duplicate), the server's CPU time counted on each side.
    const second = new Uint8Array(size);
    second.set(bytes);
    /** Server CPU ms per MiB, per side, summed over the rounds. */
    const cpu = { ours: [] as number[], baseline: [] as number[] };
    const withCpu =
      (side: "ours" | "baseline", call: () => Promise<void>) => async () => {
        const before = processCpuMs(ours.pid);
        await call();
        cpu[side].push((processCpuMs(ours.pid) - before) / (size / MiB));
      };
    const median = (values: number[]) =>
      [...values].sort((a, b) => a - b)[values.length >> 1] ?? NaN;
    const sha384MsPerMiB = () =>
      (MiB / 1e6) / (hashSpeed.MBs || speeds.sha384) * 1000;
    /**
     * The note of an upload row against PUT: both medians as times, the
     * server's CPU per MiB on each side, and what a second SHA-384 of
     * every byte costs here.
     */
    const versusPut = (what: string, hashes: string) => (row: BenchRow) => {
      const ms = (rate: number) => (size / 1e6 / rate) * 1000;
      const [mine, put] = [median(cpu.ours), median(cpu.baseline)];
      cpu.ours = [];
      cpu.baseline = [];
      return `${row.case}: median ${what} ${ms(row.ours).toFixed(0)} ms, PUT ${
        ms(row.baseline!).toFixed(0)
      } ms; server CPU (user + system, all threads) ${
        mine.toFixed(2)
      } ms/MiB vs ${put.toFixed(2)} ms/MiB for PUT (+${
        (mine - put).toFixed(2)
      }); ${hashes}, and SHA-384 alone costs ${
        sha384MsPerMiB().toFixed(2)
      } ms/MiB here (${
        Math.round(hashSpeed.MBs || speeds.sha384)
      } MB/s); where the server's CPU is the bound (2 cores shared with this client), the ratio can reach PUT's CPU / this one's = ${
        (put / mine).toFixed(2)
      }`;
    };
    const twice =
      "it hashes each byte twice (its 8 MiB part's own SHA-384, and the running SHA-384 of the whole), PUT once";
    let pair: [LargeHashes, LargeHashes] | undefined;
    const markPair = () => {
      pair = [
        markLarge(bytes, ++variant, false),
        markLarge(second, ++variant, false),
      ];
      return Promise.resolve();
    };
    const putSecond = withCpu(
      "baseline",
      () => oursPut(ours.base, pair![1].sha384, second),
    );
    const tusCase: BenchCase = {
      name:
        "HTTP tus upload in one PATCH (POST /tus/ + PATCH) vs PUT /blobs/{sha384}",
      size,
      target: 0.9,
      beforeRound: markPair,
      ours: withCpu(
        "ours",
        () => tusUpload(ours.base, bytes, pair![0].sha384),
      ),
      baseline: putSecond,
      note: versusPut("tus", twice),
    };
    const tusChunkedCase: BenchCase = {
      name:
        "HTTP tus upload in 8 MiB PATCHes (POST /tus/ + a PATCH per 8 MiB) vs PUT /blobs/{sha384}",
      size,
      targetText: "report",
      beforeRound: markPair,
      ours: withCpu(
        "ours",
        () => tusUpload(ours.base, bytes, pair![0].sha384, PART),
      ),
      baseline: putSecond,
      note: versusPut(
        "tus",
        `${twice}; each PATCH is a round trip of its own`,
      ),
    };
    const postCase: BenchCase = {
      name:
        "HTTP POST /blobs (the server computes the hash) vs PUT /blobs/{sha384}",
      size,
      target: 0.95,
      beforeRound: markPair,
      ours: withCpu("ours", () => oursPost(ours.base, pair![0].sha384, bytes)),
      baseline: putSecond,
      note: versusPut("POST", twice),
    };
    const own = [boundCase, tusCase, tusChunkedCase, postCase];
    if (!registry) return own;

    /**
     * Wraps ours and the registry's timed calls to watch each server's
     * peak RSS, and gives the row's note: both medians as times, the peaks
     * and a bound.
     */
    const watched = (
      c: Omit<BenchCase, "ours" | "baseline" | "note">,
      oursCall: () => Promise<void>,
      registryCall: () => Promise<void>,
      bound?: (row: BenchRow) => string,
    ): BenchCase => {
      const peaks = { ours: 0, registry: 0 };
      const idle = { ours: 0, registry: 0 };
      const oursRss = new RssWatch(ours.pid);
      const registryRss = new RssWatch(registry.pid);
      const run = async (
        watch: RssWatch,
        key: "ours" | "registry",
        call: () => Promise<void>,
      ) => {
        watch.start();
        try {
          await call();
        } finally {
          peaks[key] = Math.max(peaks[key], watch.stop());
        }
      };
      return {
        ...c,
        async setup() {
          await c.setup?.();
          idle.ours = oursRss.now();
          idle.registry = registryRss.now();
        },
        ours: () => run(oursRss, "ours", oursCall),
        baseline: () => run(registryRss, "registry", registryCall),
        note(row) {
          const ms = (rate: number) =>
            c.unit === "ops"
              ? (c.size / rate) * 1000
              : (c.size / 1e6 / rate) * 1000;
          return `${row.case}: median ours ${
            ms(row.ours).toFixed(0)
          } ms, ${REGISTRY} ${
            ms(row.baseline!).toFixed(0)
          } ms; server peak RSS during the row: blobstore ${
            peaks.ours.toFixed(0)
          } MiB (${idle.ours.toFixed(0)} MiB before), registry ${
            peaks.registry.toFixed(0)
          } MiB (${idle.registry.toFixed(0)} MiB before)${
            bound ? `; ${bound(row)}` : ""
          }`;
        },
      };
    };

    const hashBound = (row: BenchRow) =>
      `bound: each server verifies every byte, ours with SHA-384 (${
        Math.round(hashSpeed.MBs || speeds.sha384)
      } MB/s alone here), the registry with SHA-256 (${
        Math.round(speeds.sha256)
      } MB/s alone here, node:crypto); ours ${row.ours} MB/s = ${
        (row.ours / (hashSpeed.MBs || speeds.sha384)).toFixed(2)
      } of SHA-384 alone`;
    const ratioText = "ratio = registry time / ours";

    let put: LargeHashes | undefined;
    const putCase = watched(
      {
        name:
          `HTTP upload vs ${REGISTRY}: PUT /blobs/{sha384} vs POST + PUT ?digest= (${ratioText})`,
        size,
        target: 1.0,
        beforeRound() {
          put = markLarge(bytes, ++variant, false);
          return Promise.resolve();
        },
      },
      () => oursPut(ours.base, put!.sha384, bytes),
      () => registryPut(registry.base, put!.sha256, bytes),
      hashBound,
    );

    let chunked: LargeHashes | undefined;
    const chunkedCase = watched(
      {
        name:
          `HTTP upload in 8 MiB parts vs ${REGISTRY}: POST /uploads + PUT parts + finish vs POST + PATCH chunks + PUT ?digest= (${ratioText})`,
        size,
        target: 1.0,
        beforeRound() {
          chunked = markLarge(bytes, ++variant, true);
          return Promise.resolve();
        },
      },
      () => oursMultipart(ours.base, bytes, chunked!),
      () => registryChunked(registry.base, bytes, chunked!.sha256),
      hashBound,
    );

    let stored: LargeHashes | undefined;
    const getCase = watched(
      {
        name:
          `HTTP download vs ${REGISTRY}: GET /blobs/{sha384} vs GET /v2/…/blobs/sha256:… (${ratioText})`,
        size,
        target: 1.0,
        async setup() {
          stored = markLarge(bytes, ++variant, false);
          await oursPut(ours.base, stored.sha384, bytes);
          await registryPut(registry.base, stored.sha256, bytes);
          // Once each, untimed, checking the bytes (and warming the cache).
          for (
            const [url, algorithm, expected] of [
              [`${ours.base}/blobs/${stored.sha384}`, "sha384", stored.sha384],
              [
                registryBlobUrl(registry.base, stored.sha256),
                "sha256",
                stored.sha256,
              ],
            ]
          ) {
            const hash = createHash(algorithm);
            const res = await expect(await fetch(url), [200], `GET ${url}`);
            for await (const chunk of res.body!) hash.update(chunk);
            if (hash.digest("hex") !== expected) {
              throw new Error(`GET ${url}: the bytes differ`);
            }
          }
        },
      },
      () => download(`${ours.base}/blobs/${stored!.sha384}`, size),
      () => download(registryBlobUrl(registry.base, stored!.sha256), size),
    );

    let small: SmallBlob[] = [];
    const smallPutCase = watched(
      {
        name:
          `HTTP small uploads vs ${REGISTRY}: 4 KiB each, ${CONCURRENCY} concurrent, PUT /blobs/{sha384} vs POST + PUT ?digest= (${ratioText})`,
        size: count,
        unit: "ops",
        target: 2.0,
        beforeRound() {
          small = smallBlobs(count);
          return Promise.resolve();
        },
      },
      () =>
        inParallel(
          count,
          CONCURRENCY,
          (i) => oursPut(ours.base, small[i].sha384, small[i].bytes),
        ),
      () =>
        inParallel(
          count,
          CONCURRENCY,
          (i) => registryPut(registry.base, small[i].sha256, small[i].bytes),
        ),
    );

    let kept: SmallBlob[] = [];
    const smallGetCase = watched(
      {
        name:
          `HTTP small downloads vs ${REGISTRY}: 4 KiB each, ${CONCURRENCY} concurrent, GET /blobs/{sha384} vs GET /v2/…/blobs/sha256:… (${ratioText})`,
        size: count,
        unit: "ops",
        target: 2.0,
        async setup() {
          kept = smallBlobs(count);
          await inParallel(count, CONCURRENCY, async (i) => {
            await oursPut(ours.base, kept[i].sha384, kept[i].bytes);
            await registryPut(registry.base, kept[i].sha256, kept[i].bytes);
          });
        },
      },
      () =>
        inParallel(
          count,
          CONCURRENCY,
          (i) => download(`${ours.base}/blobs/${kept[i].sha384}`, SMALL),
        ),
      () =>
        inParallel(
          count,
          CONCURRENCY,
          (i) =>
            download(registryBlobUrl(registry.base, kept[i].sha256), SMALL),
        ),
    );

    return [
      putCase,
      boundCase,
      chunkedCase,
      getCase,
      smallPutCase,
      smallGetCase,
      tusCase,
      tusChunkedCase,
      postCase,
    ];
  },
  async close() {
    await cleanup?.();
    cleanup = undefined;
  },
  note: () =>
    serverRss.ours === undefined
      ? undefined
      : `${REGISTRY} suite: RSS at the end: blobstore server ${
        serverRss.ours.toFixed(0)
      } MiB, registry ${serverRss.registry!.toFixed(0)} MiB`,
};

if (import.meta.main) await standalone(registrySuite);
