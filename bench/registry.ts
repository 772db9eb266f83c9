/**
 * The HTTP service against a peer: the Docker/OCI registry (CNCF
 * Distribution v3.1.2), which also stores content-addressed blobs over
 * HTTP. Both run on loopback with file-system storage, each in a process
 * of its own, and the same client sends both the same bytes:
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
 * The client. The large-blob rows (every row of 256 MiB, in one request or
 * in 8 MiB pieces, this suite's own rows below included) send and receive
 * their bodies with `curl` (Debian's, ≥ 7.84 for `-w '%header{…}'`; without
 * it the suite is skipped, saying so), one `curl` process per request
 * spawned through `Deno.Command`: a light native client, as in the
 * comparison this suite answers (a Go client), where Deno's `fetch`
 * sending 256 MiB from this process burns about a core itself and, on 2
 * cores, starves both servers (ours the more: its CPU per MiB doubled), so
 * that the ratios measured the client more than the servers. Each body is
 * a file written (and flushed to disk) untimed before each round, the whole
 * blob or each 8 MiB piece, deleted after the row; an upload is `curl -sS
 * -H 'Expect:' -T <file> [-X POST|PATCH] [-H …] URL` (`-T` streams the file
 * for every method; `--data-binary @file` would read it all into curl's
 * memory first, so POST and PATCH would pay what PUT does not;
 * `Expect:` drops curl's `Expect: 100-continue`, a round trip per request,
 * for both servers alike), its status, size sent and the response
 * headers read through `-w '%{http_code}…%header{location}…'`; a download
 * is `curl -sS -o /dev/null`, its byte count checked through
 * `%{size_download}` (and once per run, untimed, the bytes' hash, through
 * curl to a file). The body-less or small control requests of those flows
 * (ours `POST /uploads`, `POST /uploads/{id}/finish` and `POST /tus/`, the
 * registry's `POST …/uploads/` and its final body-less `PUT ?digest=`)
 * stay on `fetch`, on both sides alike: they carry no bulk. Spawning a
 * `curl` costs some ms per request (about 10 ms here, curl's start-up
 * and loading its libraries; the suite's note gives a body-less request's
 * median), the same for both servers: one request each in
 * the one-request rows (ours `PUT`, the registry's `PUT` after a fetched
 * `POST`), 32 each in the 8 MiB rows. The small-blob rows stay on `fetch`
 * (16 requests in flight over kept-alive connections): 1,000 `curl`
 * processes would measure process spawning, not the servers.
 *
 * The registry is the baseline column, so the ratio ours / registry of the
 * rates is the registry's time over ours: above 1, ours is faster. Targets:
 * 1.0 on the large-blob rows, 2.0 on the small-blob rows. Every upload
 * round sends new bytes (each part of a large blob and each small blob
 * marked with the round), hashed before the round starts (SHA-384 for
 * ours, SHA-256 for the registry), so nothing is deduplicated; each
 * upload is checked (status, bytes sent, and the hash the server reports).
 * Each row's note gives both medians as times, and both servers' peak RSS
 * during the row (VmHWM of each process, reset before each timed call
 * through `/proc/<pid>/clear_refs`, else VmRSS sampled every 10 ms) beside
 * their RSS before the first round. The table's peak RSS growth column is
 * this process's, as in every suite: the client's on the small-blob rows
 * (`fetch` copies each body it sends), near nothing on the `curl` rows,
 * whose client is the `curl` process.
 *
 * Ours is `main.ts serve` (as `deno task start` runs it) on the embedded
 * default (Deno KV catalog, file backend) in a temporary directory. The
 * registry is built by `scripts/registry.sh build` (`go install …@v3.1.2`
 * into `.state/bin/`, once) with the configuration of `scripts/registry.sh
 * config` (file-system storage in a temporary directory, no auth, errors
 * only, no access log), tracing export off (`OTEL_TRACES_EXPORTER=none`:
 * nothing listens for it). Without Go the registry's rows are skipped,
 * saying so.
 *
 * Rows of our own on the same server and bytes, each against `PUT
 * /blobs/{sha384}` through `curl` (each side sending a file of its own): a
 * tus 1.0.0 upload (`POST /tus/` on `fetch`, then `PATCH` with
 * `Upload-Offset` through `curl`) in one `PATCH` (target 0.9) and in 8 MiB
 * `PATCH`es (reported), and `POST /blobs`, whose hash the server computes
 * (target 0.95); and `PUT /blobs/{sha384}` through `curl` against SHA-384
 * alone over the same bytes in this process (target 0.9). Their notes give
 * the server's CPU time per MiB on each side, measured in the same rounds
 * (`/proc/<pid>/stat`), and what the extra hashing costs: a tus upload
 * hashes each byte twice (its 8 MiB part's own hash, and the running hash
 * of the whole), a `PUT` once, and so does a `POST` here (the file backend
 * stages it: one temporary file named by its hash). Without Go these rows
 * still run.
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

// The curl client of the large-blob rows.

const decoder = new TextDecoder();

/**
 * `curl --version`'s version when it is at least 7.84 (`-w '%header{…}'`),
 * else why the suite cannot run.
 */
async function curlVersion(): Promise<{ version: string } | string> {
  let out;
  try {
    out = await new Deno.Command("curl", {
      args: ["--version"],
      stdin: "null",
    }).output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return "curl not found (the large-blob rows send their bodies with curl; install it, e.g. apt-get install curl)";
    }
    throw err;
  }
  const match = decoder.decode(out.stdout).match(/^curl (\d+)\.(\d+)\.(\d+)/);
  if (out.code !== 0 || !match) {
    return `curl --version failed (exit ${out.code}): ${
      decoder.decode(out.stderr).trim()
    }`;
  }
  const [major, minor] = [Number(match[1]), Number(match[2])];
  const version = `${match[1]}.${match[2]}.${match[3]}`;
  if (major < 7 || (major === 7 && minor < 84)) {
    return `curl ${version} is older than 7.84 (the suite reads response headers with -w '%header{…}')`;
  }
  return { version };
}

/** What one `curl` request answered. */
interface CurlAnswer {
  status: number;
  /** The response body (empty where `-o` sent it elsewhere). */
  body: string;
  /** Bytes of response body received. */
  downloaded: number;
  /** Bytes of request body sent. */
  uploaded: number;
  /** The response headers asked for, by name ("" where absent). */
  headers: Record<string, string>;
}

/** Separates the response body from `-w`'s output on curl's stdout. */
const WRITE_OUT = "\n[curl -w]\n";

/**
 * One HTTP request through a `curl` process of its own: `curl -sS -H
 * 'Expect:' -w … ARGS`, the response body to stdout unless `args` has an
 * `-o`, and the response headers named in `headers` read through `-w
 * '%header{name}'`. Fails where curl does (no HTTP answer), not on an
 * HTTP status (see `expectCurl`).
 */
async function curl(
  what: string,
  args: string[],
  headers: string[] = [],
): Promise<CurlAnswer> {
  const format = `${WRITE_OUT}%{http_code} %{size_download} %{size_upload}${
    headers.map((name) => `\n%header{${name}}`).join("")
  }`;
  const { code, stdout, stderr } = await new Deno.Command("curl", {
    args: ["-sS", "-H", "Expect:", "-w", format, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(stdout);
  const at = text.lastIndexOf(WRITE_OUT);
  if (code !== 0 || at < 0) {
    throw new Error(
      `${what}: curl exited ${code}: ${decoder.decode(stderr).trim()}`,
    );
  }
  const [counts, ...values] = text.slice(at + WRITE_OUT.length).split("\n");
  const [status, downloaded, uploaded] = counts.split(" ").map(Number);
  return {
    status,
    body: text.slice(0, at),
    downloaded,
    uploaded,
    headers: Object.fromEntries(
      headers.map((name, i) => [name, values[i]?.trim() ?? ""]),
    ),
  };
}

/** Fails unless `answer` has one of `statuses` and sent `sent` bytes. */
function expectCurl(
  answer: CurlAnswer,
  statuses: number[],
  what: string,
  sent = 0,
): CurlAnswer {
  if (!statuses.includes(answer.status)) {
    throw new Error(
      `${what}: HTTP ${answer.status} ${answer.body.slice(0, 300)}`,
    );
  }
  if (answer.uploaded !== sent) {
    throw new Error(`${what}: curl sent ${answer.uploaded} bytes of ${sent}`);
  }
  return answer;
}

/** `curl -T piece [-X method] [-H header…] url`: the upload of one file. */
async function curlUpload(
  what: string,
  piece: Piece,
  url: string,
  options: { method?: string; headers?: string[]; read?: string[] } = {},
  statuses: number[],
): Promise<CurlAnswer> {
  const answer = await curl(
    what,
    [
      "-T",
      piece.path,
      ...(options.method ? ["-X", options.method] : []),
      ...(options.headers ?? []).flatMap((header) => ["-H", header]),
      url,
    ],
    options.read,
  );
  return expectCurl(answer, statuses, what, piece.length);
}

/** `curl -o /dev/null url`, checking the status and byte count. */
async function curlDownload(url: string, size: number): Promise<void> {
  const answer = expectCurl(
    await curl(`GET ${url}`, ["-o", "/dev/null", url]),
    [200],
    `GET ${url}`,
  );
  if (answer.downloaded !== size) {
    throw new Error(`GET ${url}: ${answer.downloaded} bytes of ${size}`);
  }
}

/** A body curl sends from a file: `length` bytes of the blob at `offset`. */
interface Piece {
  path: string;
  offset: number;
  length: number;
}

/** The files curl sends, written before each round, removed after a row. */
class Bodies {
  #dir: string;
  #written = new Set<string>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** A path for a file of our own in the directory (removed with the rest). */
  path(name: string): string {
    const path = `${this.#dir}/${name}`;
    this.#written.add(path);
    return path;
  }

  /**
   * Writes `bytes` as the file `name`, or in pieces of `piece` bytes as
   * `name.0`, `name.1`, …, each flushed to disk (so no write-back runs
   * during a timed call); the pieces in order.
   */
  async write(
    name: string,
    bytes: Uint8Array,
    piece = bytes.length,
  ): Promise<Piece[]> {
    const pieces: Piece[] = [];
    for (let offset = 0; offset < bytes.length; offset += piece) {
      const path = this.path(
        piece >= bytes.length ? name : `${name}.${pieces.length}`,
      );
      const data = bytes.subarray(offset, offset + piece);
      await Deno.writeFile(path, data);
      const file = await Deno.open(path);
      try {
        await file.syncData();
      } finally {
        file.close();
      }
      pieces.push({ path, offset, length: data.length });
    }
    return pieces;
  }

  /** Removes every file written. */
  async remove(): Promise<void> {
    for (const path of this.#written) {
      await Deno.remove(path).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      });
    }
    this.#written.clear();
  }
}

// Ours.

/** `PUT /blobs/{hash}` through `fetch` (the small-blob rows). */
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

/** `PUT /blobs/{hash}` of a file through `curl`. */
async function oursPutFile(base: string, hash: string, body: Piece) {
  const what = `PUT /blobs/${hash}`;
  const answer = await curlUpload(what, body, `${base}/blobs/${hash}`, {}, [
    201,
  ]);
  const stored = JSON.parse(answer.body) as { hash?: string };
  if (stored.hash !== hash) {
    throw new Error(`${what}: answered hash ${stored.hash}`);
  }
}

/**
 * `POST /uploads` (fetch), each part's `PUT` from its file (curl), `POST
 * /uploads/{id}/finish` (fetch), which must answer the whole's hash.
 */
async function oursMultipart(
  base: string,
  parts: Piece[],
  hashes: LargeHashes,
) {
  const created = await expect(
    await fetch(`${base}/uploads`, { method: "POST" }),
    [201],
    "POST /uploads",
  );
  const { id } = await created.json() as { id: string };
  for (const [n, part] of parts.entries()) {
    await curlUpload(
      `PUT part ${n}`,
      part,
      `${base}/uploads/${id}/parts/${n}?hash=${
        hashes.parts384![n]
      }&offset=${part.offset}`,
      {},
      [200],
    );
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

/** `POST /tus/` for `size` bytes (fetch): the upload's URL. */
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
 * A tus upload of `size` bytes: `POST /tus/` (fetch), then a `PATCH` per
 * piece (curl), each at its offset, which the last answer's `Upload-Offset`
 * must be; the last answer's `Upload-Metadata` must name `hash`.
 */
async function tusUpload(
  base: string,
  pieces: Piece[],
  size: number,
  hash: string,
) {
  const url = await tusCreate(base, size);
  let offset = 0;
  let metadata = "";
  for (const piece of pieces) {
    if (offset !== piece.offset) {
      throw new Error(
        `tus upload: at ${offset}, the next piece at ${piece.offset}`,
      );
    }
    const answer = await curlUpload(
      `PATCH at ${offset}`,
      piece,
      url,
      {
        method: "PATCH",
        headers: [
          "Tus-Resumable: 1.0.0",
          "Content-Type: application/offset+octet-stream",
          `Upload-Offset: ${offset}`,
        ],
        read: ["upload-offset", "upload-metadata"],
      },
      [204],
    );
    offset = Number(answer.headers["upload-offset"]);
    metadata = answer.headers["upload-metadata"];
  }
  if (offset !== size) {
    throw new Error(`tus upload: Upload-Offset ${offset} of ${size}`);
  }
  const named = /(?:^|,)\s*sha384 ([A-Za-z0-9+/=]+)/.exec(metadata)?.[1];
  if (!named || atob(named) !== hash) {
    throw new Error(
      `tus upload: Upload-Metadata ${metadata}, expected ${hash}`,
    );
  }
}

/**
 * `POST /blobs` of a file (curl): the server computes the hash, which must
 * be `hash`.
 */
async function oursPost(base: string, hash: string, body: Piece) {
  const answer = await curlUpload("POST /blobs", body, `${base}/blobs`, {
    method: "POST",
  }, [201]);
  const stored = JSON.parse(answer.body) as { hash?: string };
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

/** `POST /v2/<repo>/blobs/uploads/` (fetch): the upload's URL. */
async function registryStart(base: string): Promise<URL> {
  const res = await expect(
    await fetch(`${base}/v2/${REPO}/blobs/uploads/`, { method: "POST" }),
    [202],
    "POST /v2/…/blobs/uploads/",
  );
  await res.arrayBuffer();
  return locationOf(res.headers.get("location"), res.status, base);
}

function locationOf(
  location: string | null,
  status: number,
  base: string,
): URL {
  if (!location) throw new Error(`HTTP ${status} without a Location`);
  return new URL(location, base);
}

function checkDigest(digest: string | null, sha256: string): void {
  if (digest !== `sha256:${sha256}`) {
    throw new Error(`PUT upload: digest ${digest}, expected sha256:${sha256}`);
  }
}

/** `PUT <upload>&digest=sha256:…` through `fetch`, with `body` or none. */
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
  checkDigest(res.headers.get("docker-content-digest"), sha256);
}

/** `POST` + `PUT ?digest=` with the body, all through `fetch` (small blobs). */
async function registryPut(
  base: string,
  sha256: string,
  body: Uint8Array<ArrayBuffer>,
) {
  await registryCommit(await registryStart(base), sha256, body);
}

/** `POST` (fetch) + `PUT ?digest=` with a file as the body (curl). */
async function registryPutFile(base: string, sha256: string, body: Piece) {
  const upload = await registryStart(base);
  upload.searchParams.set("digest", `sha256:${sha256}`);
  const answer = await curlUpload(
    "PUT upload ?digest=",
    body,
    upload.href,
    {
      headers: ["Content-Type: application/octet-stream"],
      read: ["docker-content-digest"],
    },
    [201],
  );
  checkDigest(answer.headers["docker-content-digest"], sha256);
}

/**
 * `POST` (fetch), a `PATCH` per chunk from its file with its
 * `Content-Range` (curl), each to the last answer's `Location`, then `PUT
 * ?digest=` without a body (fetch).
 */
async function registryChunked(
  base: string,
  chunks: Piece[],
  sha256: string,
) {
  let upload = await registryStart(base);
  for (const chunk of chunks) {
    const range = `${chunk.offset}-${chunk.offset + chunk.length - 1}`;
    const answer = await curlUpload(
      `PATCH ${range}`,
      chunk,
      upload.href,
      {
        method: "PATCH",
        headers: [
          "Content-Type: application/octet-stream",
          `Content-Range: ${range}`,
        ],
        read: ["location"],
      },
      [202],
    );
    upload = locationOf(answer.headers.location || null, answer.status, base);
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

/** curl's version, and a body-less request's median time through it, per server. */
const curlCost: { version?: string; ours?: number; registry?: number } = {};

/**
 * The median wall time, in ms, of 9 body-less `curl` requests to `url`
 * (answered `status`): what spawning curl adds to each request.
 */
async function curlEmpty(url: string, status: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 9; i++) {
    const start = performance.now();
    expectCurl(
      await curl(`GET ${url}`, ["-o", "/dev/null", url]),
      [status],
      `GET ${url}`,
    );
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[4];
}

/** The cases: our HTTP service vs the registry, same client, same bytes. */
export const registrySuite: BenchSuite = {
  name: "registry",
  async open({ quick }) {
    const client = await curlVersion();
    if (typeof client === "string") return client;
    curlCost.version = client.version;
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
    await Deno.mkdir(`${dir}/bodies`);
    const bodies = new Bodies(`${dir}/bodies`);
    const removeBodies = () => bodies.remove();
    curlCost.ours = await curlEmpty(
      `${ours.base}/blobs/${"0".repeat(96)}`,
      404,
    );
    if (registry) {
      curlCost.registry = await curlEmpty(`${registry.base}/v2/`, 200);
    }

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
    let boundBody: Piece[] = [];
    const boundCase: BenchCase = {
      name:
        "HTTP upload PUT /blobs/{sha384} (curl) vs SHA-384 alone over the same bytes (node:crypto, in-process)",
      size,
      target: 0.9,
      async beforeRound() {
        bound = markLarge(bytes, ++variant, false);
        boundBody = await bodies.write("body", bytes);
      },
      ours: () => oursPutFile(ours.base, bound!.sha384, boundBody[0]),
      baseline() {
        hashAlone("sha384", bytes);
        return Promise.resolve();
      },
      teardown: removeBodies,
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
      } MB/s); where the server's CPU is the bound (2 cores shared with the client), the ratio can reach PUT's CPU / this one's = ${
        (put / mine).toFixed(2)
      }`;
    };
    const twice =
      "it hashes each byte twice (its 8 MiB part's own SHA-384, and the running SHA-384 of the whole), PUT once";
    let pair: [LargeHashes, LargeHashes] | undefined;
    /** The files of a round of the rows against PUT: ours, PUT's. */
    let pairBodies: [Piece[], Piece[]] = [[], []];
    /** Marks both sides' bytes, written as files (ours whole or in `piece`s). */
    const markPair = (piece = size) => async () => {
      pair = [
        markLarge(bytes, ++variant, false),
        markLarge(second, ++variant, false),
      ];
      pairBodies = [
        await bodies.write("body", bytes, piece),
        await bodies.write("put", second),
      ];
    };
    const putSecond = withCpu(
      "baseline",
      () => oursPutFile(ours.base, pair![1].sha384, pairBodies[1][0]),
    );
    const tusCase: BenchCase = {
      name:
        "HTTP tus upload in one PATCH (POST /tus/ + PATCH) vs PUT /blobs/{sha384}",
      size,
      target: 0.9,
      beforeRound: markPair(),
      ours: withCpu(
        "ours",
        () => tusUpload(ours.base, pairBodies[0], size, pair![0].sha384),
      ),
      baseline: putSecond,
      teardown: removeBodies,
      note: versusPut("tus", twice),
    };
    const tusChunkedCase: BenchCase = {
      name:
        "HTTP tus upload in 8 MiB PATCHes (POST /tus/ + a PATCH per 8 MiB) vs PUT /blobs/{sha384}",
      size,
      targetText: "report",
      beforeRound: markPair(PART),
      ours: withCpu(
        "ours",
        () => tusUpload(ours.base, pairBodies[0], size, pair![0].sha384),
      ),
      baseline: putSecond,
      teardown: removeBodies,
      note: versusPut(
        "tus",
        `${twice}; each PATCH is a round trip and a curl process of its own`,
      ),
    };
    const postCase: BenchCase = {
      name:
        "HTTP POST /blobs (the server computes the hash) vs PUT /blobs/{sha384}",
      size,
      target: 0.95,
      beforeRound: markPair(),
      ours: withCpu(
        "ours",
        () => oursPost(ours.base, pair![0].sha384, pairBodies[0][0]),
      ),
      baseline: putSecond,
      teardown: removeBodies,
      note: versusPut(
        "POST",
        "on this server's file backend, which stages, it hashes each byte once, as PUT does (a temporary file named by its hash once known; on a backend that cannot stage, it takes parts and hashes each byte twice)",
      ),
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
    let putBody: Piece[] = [];
    const putCase = watched(
      {
        name:
          `HTTP upload vs ${REGISTRY} (curl): PUT /blobs/{sha384} vs POST + PUT ?digest= (${ratioText})`,
        size,
        target: 1.0,
        async beforeRound() {
          put = markLarge(bytes, ++variant, false);
          putBody = await bodies.write("body", bytes);
        },
        teardown: removeBodies,
      },
      () => oursPutFile(ours.base, put!.sha384, putBody[0]),
      () => registryPutFile(registry.base, put!.sha256, putBody[0]),
      hashBound,
    );

    let chunked: LargeHashes | undefined;
    let parts: Piece[] = [];
    const chunkedCase = watched(
      {
        name:
          `HTTP upload in 8 MiB parts vs ${REGISTRY} (curl): POST /uploads + PUT parts + finish vs POST + PATCH chunks + PUT ?digest= (${ratioText})`,
        size,
        target: 1.0,
        async beforeRound() {
          chunked = markLarge(bytes, ++variant, true);
          parts = await bodies.write("part", bytes, PART);
        },
        teardown: removeBodies,
      },
      () => oursMultipart(ours.base, parts, chunked!),
      () => registryChunked(registry.base, parts, chunked!.sha256),
      hashBound,
    );

    let stored: LargeHashes | undefined;
    const getCase = watched(
      {
        name:
          `HTTP download vs ${REGISTRY} (curl): GET /blobs/{sha384} vs GET /v2/…/blobs/sha256:… (${ratioText})`,
        size,
        target: 1.0,
        async setup() {
          stored = markLarge(bytes, ++variant, false);
          const [body] = await bodies.write("body", bytes);
          await oursPutFile(ours.base, stored.sha384, body);
          await registryPutFile(registry.base, stored.sha256, body);
          // Once each, untimed, through curl to a file: checking the bytes
          // (and warming the cache).
          const file = bodies.path("download");
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
            const answer = expectCurl(
              await curl(`GET ${url}`, ["-o", file, url]),
              [200],
              `GET ${url}`,
            );
            if (answer.downloaded !== size) {
              throw new Error(
                `GET ${url}: ${answer.downloaded} bytes of ${size}`,
              );
            }
            const hash = createHash(algorithm);
            for await (const chunk of (await Deno.open(file)).readable) {
              hash.update(chunk);
            }
            if (hash.digest("hex") !== expected) {
              throw new Error(`GET ${url}: the bytes differ`);
            }
          }
          await bodies.remove();
        },
        teardown: removeBodies,
      },
      () => curlDownload(`${ours.base}/blobs/${stored!.sha384}`, size),
      () => curlDownload(registryBlobUrl(registry.base, stored!.sha256), size),
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
  note: () => {
    if (curlCost.version === undefined) return undefined;
    const client =
      `the large-blob rows' client: curl ${curlCost.version}, one process per request; a body-less request through it takes ${
        curlCost.ours?.toFixed(1)
      } ms (median of 9) to blobstore${
        curlCost.registry === undefined
          ? ""
          : `, ${curlCost.registry.toFixed(1)} ms to the registry`
      }`;
    return serverRss.ours === undefined
      ? `${REGISTRY} suite: ${client}`
      : `${REGISTRY} suite: RSS at the end: blobstore server ${
        serverRss.ours.toFixed(0)
      } MiB, registry ${serverRss.registry!.toFixed(0)} MiB; ${client}`;
  },
};

if (import.meta.main) await standalone(registrySuite);
