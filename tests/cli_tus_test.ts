/**
 * `blobstore upload --tus URL FILE` as a subprocess against the real server
 * (`main.ts serve` in a subprocess on a temporary data directory), through
 * a TCP proxy: a run killed mid-upload leaves its upload URL in the state
 * file, and the next run resumes from the server's offset (sending fewer
 * bytes than the file) and prints the file's hash; the endpoint found from
 * the server's base URL or given as is; chunked PATCHes; a file changed
 * after an interrupted run starts a new upload; usage errors.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { startServer } from "./server_process.ts";
import { CuttingProxy } from "./tcp_proxy.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;

/** Keeps the subprocess off any outer configuration. */
const ENV = {
  MONGODB_URL: "",
  SWIFT_AUTH_URL: "",
  S3_BUCKET: "",
  BLOBSTORE_TOKEN: "",
  BLOBSTORE_DATA: "",
  BLOBSTORE_TUS_STATE: "",
  NO_COLOR: "1",
};

function cliCommand(
  args: string[],
  env: Record<string, string>,
  cwd: string,
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, ...args],
    env: { ...ENV, ...env },
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function cli(
  dir: string,
  args: string[],
  env: Record<string, string> = {},
) {
  const { code, stdout, stderr } = await cliCommand(args, env, dir).output();
  const decoder = new TextDecoder();
  return { code, out: decoder.decode(stdout), err: decoder.decode(stderr) };
}

function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(bytes.subarray(at, at + 65536));
  }
  return bytes;
}

function sha384Hex(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

async function withServer(
  fn: (ctx: {
    dir: string;
    base: string;
    proxy: CuttingProxy;
  }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-cli-tus-" });
  const server = await startServer(join(dir, "data"));
  const proxy = new CuttingProxy(server.port);
  try {
    await fn({ dir, base: server.base, proxy });
  } finally {
    await proxy.close();
    await server.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

interface StateFile {
  version: number;
  uploads: Record<string, { url: string; size: number; sha384: string }>;
}

async function readState(path: string): Promise<StateFile> {
  return JSON.parse(await Deno.readTextFile(path));
}

/**
 * The offset of a tus upload once the server has taken in what it got
 * (two HEADs 200 ms apart agree): a cut PATCH may still be ending.
 */
async function settledOffset(url: string): Promise<number> {
  let last = -1;
  for (let i = 0; i < 100; i++) {
    const res = await fetch(url, {
      method: "HEAD",
      headers: { "tus-resumable": "1.0.0" },
    });
    assert.strictEqual(res.status, 200);
    const offset = Number(res.headers.get("upload-offset"));
    if (offset === last) return offset;
    last = offset;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`the offset of ${url} never settled`);
}

async function assertServed(base: string, hash: string, bytes: Uint8Array) {
  const res = await fetch(`${base}/blobs/${hash}`);
  assert.strictEqual(res.status, 200);
  const got = new Uint8Array(await res.arrayBuffer());
  assert.strictEqual(got.length, bytes.length);
  assert.strictEqual(sha384Hex(got), sha384Hex(bytes));
}

Deno.test("cli upload --tus: a run killed mid-upload is resumed by the next from the server's offset, which prints the hash", async () => {
  await withServer(async ({ dir, base, proxy }) => {
    const size = 64 * MiB;
    const bytes = randomBytes(size);
    const file = join(dir, "big.bin");
    await Deno.writeFile(file, bytes);
    const hash = sha384Hex(bytes);
    const state = join(dir, "state", "tus.json");
    const env = { BLOBSTORE_TUS_STATE: state };

    // First run: held after a random number of bytes, then killed.
    const cutAt = Math.floor(8 * MiB + Math.random() * 40 * MiB);
    const held = proxy.cutAfter(cutAt, "hold");
    const first = cliCommand(["upload", "--tus", proxy.url, file], env, dir)
      .spawn();
    const firstOutput = first.output();
    await held;
    first.kill("SIGKILL");
    const killed = await firstOutput;
    proxy.dropHeld();
    assert.notStrictEqual(killed.code, 0);
    assert.strictEqual(new TextDecoder().decode(killed.stdout), "");

    // The state file names the upload, which the server has kept.
    const saved = Object.values((await readState(state)).uploads);
    assert.strictEqual(saved.length, 1);
    assert.strictEqual(saved[0].size, size);
    assert.strictEqual(saved[0].sha384, hash);
    assert.match(saved[0].url, new RegExp(`^${proxy.url}/tus/.+`));
    const offset = await settledOffset(saved[0].url.replace(proxy.url, base));
    assert.ok(offset > 0, `the server kept nothing of the first run`);

    // Second run: resumes there, sends the rest only (its connection cut
    // once more on the way, which it rides out by asking the server where
    // the upload stands), prints the hash.
    const before = proxy.upstreamBytes;
    const cutAgain = Math.floor(
      MiB + Math.random() * (size - offset - 2 * MiB),
    );
    const cut = proxy.cutAfter(cutAgain);
    const second = await cli(dir, ["upload", "--tus", proxy.url, file], env);
    const sent = proxy.upstreamBytes - before;
    await cut;
    assert.strictEqual(second.code, 0, second.err);
    assert.strictEqual(second.out, `${hash}\n`);
    assert.match(
      second.err,
      new RegExp(`resuming ${saved[0].url} at ${offset} of ${size} bytes`),
    );
    assert.match(
      second.err,
      /failed: .+; asking the server where the upload stands in 250 ms/,
    );
    // What the server had of each run is not sent again: the rest, plus
    // request heads, plus what went out before a 423 or 409 was answered,
    // plus what the server had not read when the cut came (bytes still in
    // socket buffers die with the connection: up to a few MiB, more while
    // the server stores one 8 MiB part before reading on).
    assert.ok(sent >= size - offset, `${sent} < ${size - offset}`);
    assert.ok(
      sent < size - offset + 12 * MiB,
      `the second run sent ${sent} bytes for the ${
        size - offset
      } left: ${second.err}`,
    );
    await assertServed(base, hash, bytes);
    // Finished: forgotten.
    assert.deepStrictEqual((await readState(state)).uploads, {});
    console.error(
      `  first run killed after ${cutAt} bytes, the server had ${offset}; second run cut after ${cutAgain}, sent ${sent}`,
    );
  });
});

Deno.test("cli upload --tus: the endpoint from the server's base URL or as given, chunked PATCHes, --tus-state, and a file changed after an interrupted run", async () => {
  await withServer(async ({ dir, base, proxy }) => {
    const state = join(dir, "flag-state.json");
    const bytes = randomBytes(3 * MiB + 17);
    const file = join(dir, "medium.bin");
    await Deno.writeFile(file, bytes);
    const hash = sha384Hex(bytes);

    // The tus endpoint itself, 1 MiB a PATCH, the state file by flag.
    const chunked = await cli(dir, [
      "upload",
      "--tus",
      `${base}/tus/`,
      "--chunk-size",
      "1M",
      "--tus-state",
      state,
      file,
    ]);
    assert.strictEqual(chunked.code, 0, chunked.err);
    assert.strictEqual(chunked.out, `${hash}\n`);
    assert.strictEqual(chunked.err, "");
    await assertServed(base, hash, bytes);

    // Interrupted (the connection held, the run killed), then the file
    // changes: its size and time differ, so the next run starts anew.
    const held = proxy.cutAfter(MiB, "hold");
    const first = cliCommand(
      ["upload", "--tus", proxy.url, "--tus-state", state, file],
      {},
      dir,
    ).spawn();
    const output = first.output();
    await held;
    first.kill("SIGKILL");
    await output;
    proxy.dropHeld();
    assert.strictEqual(
      Object.keys((await readState(state)).uploads).length,
      1,
    );
    const changed = randomBytes(2 * MiB);
    await Deno.writeFile(file, changed);
    const again = await cli(dir, [
      "upload",
      "--tus",
      proxy.url,
      "--tus-state",
      state,
      file,
    ]);
    assert.strictEqual(again.code, 0, again.err);
    assert.strictEqual(again.out, `${sha384Hex(changed)}\n`);
    assert.doesNotMatch(again.err, /resuming/);
    await assertServed(base, sha384Hex(changed), changed);
    // The finished one is forgotten; the abandoned one stays (until it
    // is 30 days old), harmless.
    assert.strictEqual(
      Object.keys((await readState(state)).uploads).length,
      1,
    );
  });
});

Deno.test("cli upload --tus: usage errors exit 2, an unreachable or wrong URL exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-cli-tus-" });
  try {
    const file = join(dir, "f.bin");
    await Deno.writeFile(file, new Uint8Array(10));
    for (
      const args of [
        ["upload", "--tus", "http://127.0.0.1:9/"],
        ["upload", "--tus", "not a url", file],
        ["upload", "--tus", "ftp://127.0.0.1/", file],
        ["upload", "--tus", "http://127.0.0.1:9/", "--part-size", "5M", file],
        ["upload", "--tus", "http://127.0.0.1:9/", "--chunk-size", "0", file],
        ["upload", "--chunk-size", "5M", file],
        ["upload", "--tus-state", join(dir, "s.json"), file],
      ]
    ) {
      const res = await cli(dir, args);
      assert.strictEqual(res.code, 2, `${args.join(" ")}: ${res.err}`);
      assert.match(
        res.err,
        /^blobstore: .+\nRun 'blobstore --help' for usage\.\n$/,
      );
    }
    // Nothing listens on port 9 of 127.0.0.1.
    const refused = await cli(dir, [
      "upload",
      "--tus",
      "http://127.0.0.1:9/",
      file,
    ], { BLOBSTORE_TUS_STATE: join(dir, "s.json") });
    assert.strictEqual(refused.code, 1);
    assert.match(refused.err, /^blobstore: OPTIONS http:\/\/127\.0\.0\.1:9\//);
    // No data directory was made: --tus works without one.
    await assert.rejects(Deno.stat(join(dir, "data")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
