/**
 * The `blobstore` CLI driven as a subprocess against a temporary data
 * directory: exit codes and messages, put/get/stat, the progress bar on a
 * pseudo-terminal (through util-linux `script`), a multipart upload killed
 * halfway and resumed, gc, and serve.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Catalog } from "../src/catalog.ts";
import { parseArgs } from "../src/cli/args.ts";
import type { StoreContext } from "../src/cli/command.ts";
import { gcCommand } from "../src/cli/commands/gc.ts";
import { FileBackend } from "../fs.ts";
import { MultipartBlobs } from "../src/multipart_blobs.ts";
import { BadParamsError } from "../src/errors.ts";
import { openSeams } from "../src/server/config.ts";
import { Store } from "../src/store.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;

/** Keeps the subprocess on the embedded default whatever the outer environment says. */
const ENV = {
  MONGODB_URL: "",
  SWIFT_AUTH_URL: "",
  BLOBSTORE_TOKEN: "",
  BLOBSTORE_DATA: "",
  BLOBSTORE_MAX_PARTS: "",
  NO_COLOR: "1",
};

interface Result {
  code: number;
  stdout: Uint8Array;
  out: string;
  err: string;
}

function command(
  data: string,
  args: string[],
  env: Record<string, string> = {},
): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, "--data", data, ...args],
    env: { ...ENV, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function cli(data: string, ...args: string[]): Promise<Result> {
  return await cliWith({}, data, ...args);
}

/** {@linkcode cli} with `env` added to the environment. */
async function cliWith(
  env: Record<string, string>,
  data: string,
  ...args: string[]
): Promise<Result> {
  const { code, stdout, stderr } = await command(data, args, env).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout,
    out: decoder.decode(stdout),
    err: decoder.decode(stderr),
  };
}

function sha384Hex(bytes: Uint8Array): string {
  return createHash("sha384").update(bytes).digest("hex");
}

function bytesOf(size: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i += 4) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[i] = x;
    bytes[i + 1] = x >> 8;
    bytes[i + 2] = x >> 16;
    bytes[i + 3] = x >> 24;
  }
  return bytes;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads a child's stream until `pattern` shows up; returns what was read. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): Promise<{ text: string; rest: ReadableStream<Uint8Array> }> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!pattern.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`stream ended before ${pattern}: ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  return { text, rest: stream };
}

Deno.test("cli: usage and exit codes", async (t) => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    await t.step("--help prints usage, exit 0", async () => {
      const res = await cli(data, "--help");
      assert.strictEqual(res.code, 0);
      for (const word of ["put", "get", "stat", "upload", "gc", "serve"]) {
        assert.match(res.out, new RegExp(`\\b${word}\\b`));
      }
    });
    await t.step("usage errors exit 2 with a hint", async () => {
      for (
        const args of [
          [],
          ["frobnicate"],
          ["put"],
          ["get", "--bogus"],
          ["get", "abc"],
          ["stat"],
          ["gc", "--before", "1h"],
          ["gc", "--keep", "x", "--before", "soon"],
          ["upload", "f", "--part-size", "lots"],
          ["--max-parts", "0", "put", "f"],
          ["--max-parts", "10001", "put", "f"],
          ["put", "f", "--max-parts", "lots"],
        ]
      ) {
        const res = await cli(data, ...args);
        assert.strictEqual(res.code, 2, `${args.join(" ")}: ${res.err}`);
        assert.match(
          res.err,
          /^blobstore: .+\nRun 'blobstore --help' for usage\.\n$/,
        );
      }
    });
  });
});

Deno.test("cli: put, stat, get", async (t) => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const small = new TextEncoder().encode("hello, blobs\n");
    const medium = bytesOf(MiB + 17, 3);
    await Deno.writeFile(join(dir, "small.txt"), small);
    await Deno.writeFile(join(dir, "medium.bin"), medium);
    const smallHash = sha384Hex(small);
    const mediumHash = sha384Hex(medium);

    await t.step(
      "put prints one hash a line; quiet on stderr when piped",
      async () => {
        const res = await cli(
          data,
          "put",
          join(dir, "small.txt"),
          join(dir, "medium.bin"),
        );
        assert.strictEqual(res.code, 0, res.err);
        assert.strictEqual(res.out, `${smallHash}\n${mediumHash}\n`);
        assert.strictEqual(res.err, "");
      },
    );

    await t.step(
      "put of a missing file: reported, the others stored, exit 1",
      async () => {
        const res = await cli(
          data,
          "put",
          join(dir, "nope.txt"),
          join(dir, "small.txt"),
        );
        assert.strictEqual(res.code, 1);
        assert.match(res.err, /nope\.txt: no such file/);
        assert.strictEqual(res.out, `${smallHash}\n`);
      },
    );

    await t.step("stat", async () => {
      const res = await cli(data, "stat", mediumHash);
      assert.strictEqual(res.code, 0);
      assert.match(res.out, new RegExp(`^hash  ${mediumHash}$`, "m"));
      assert.match(res.out, /^size {2}1048593 \(1\.0 MiB\)$/m);
      assert.match(res.out, /^kind {2}single$/m);
      const json = await cli(data, "stat", "--json", smallHash);
      assert.deepStrictEqual(JSON.parse(json.out), {
        hash: smallHash,
        size: small.length,
      });
      const absent = await cli(data, "stat", "0".repeat(96));
      assert.strictEqual(absent.code, 1);
      assert.match(absent.err, /^blobstore: blob 0+ not found\n$/);
    });

    await t.step("get to stdout, to a file, and ranges", async () => {
      const res = await cli(data, "get", mediumHash);
      assert.strictEqual(res.code, 0);
      assert.deepStrictEqual(res.stdout, medium);
      const out = join(dir, "copy.bin");
      const toFile = await cli(data, "get", mediumHash, "-o", out);
      assert.strictEqual(toFile.code, 0);
      assert.strictEqual(toFile.out, "");
      assert.deepStrictEqual(await Deno.readFile(out), medium);
      for (
        const [range, start, end] of [
          ["10-19", 10, 20],
          ["1048000-", 1048000, medium.length],
          ["-5", medium.length - 5, medium.length],
        ] as const
      ) {
        const part = await cli(data, "get", mediumHash, "--range", range);
        assert.strictEqual(part.code, 0);
        assert.deepStrictEqual(part.stdout, medium.subarray(start, end), range);
      }
      const beyond = await cli(data, "get", smallHash, "--range=100-");
      assert.strictEqual(beyond.code, 1);
      assert.match(beyond.err, /not satisfiable \(blob is 13 bytes\)/);
      const absent = await cli(
        data,
        "get",
        "1".repeat(96),
        "-o",
        join(dir, "absent"),
      );
      assert.strictEqual(absent.code, 1);
      assert.match(absent.err, /not found/);
      await assert.rejects(
        Deno.stat(join(dir, "absent")),
        Deno.errors.NotFound,
      );
    });
  });
});

Deno.test("cli: a progress bar on a terminal", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const file = join(dir, "big.bin");
    const content = bytesOf(16 * MiB, 4);
    await Deno.writeFile(file, content);
    const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    const line = [
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-kv",
      MAIN,
      "--data",
      data,
      "put",
      file,
    ]
      .map(quote).join(" ");
    // script(1) runs the command on a pseudo-terminal and copies what it
    // writes there (stdout and stderr alike) to its own stdout.
    const { code, stdout } = await new Deno.Command("script", {
      args: ["-qfec", line, "/dev/null"],
      env: ENV,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    // Erase-line escapes become a marker, so the patterns stay readable.
    const text = new TextDecoder().decode(stdout).replaceAll("\x1b[K", "<EL>");
    assert.strictEqual(code, 0, text);
    assert.match(
      text,
      /\r<EL>hashing big\.bin \[[= ]{24}\] [\d.]+ (MiB|KiB|B) \/ 16\.0 MiB {2}[\d.]+ (MiB|KiB|B)\/s {2}ETA/,
    );
    assert.match(
      text,
      /\r<EL>storing big\.bin \[={24}\] 16\.0 MiB \/ 16\.0 MiB {2}[\d.]+ (MiB|GiB)\/s {2}ETA 0:00\r?\n/,
    );
    assert.match(text, new RegExp(`^${sha384Hex(content)}\\r?$`, "m"));
  });
});

Deno.test("cli: a multipart upload killed halfway resumes, and is served over HTTP", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const file = join(dir, "large.bin");
    const content = bytesOf(25 * MiB, 5);
    await Deno.writeFile(file, content);
    const hash = sha384Hex(content);

    const first = command(data, ["upload", file, "--part-size", "5MiB", "-v"])
      .spawn();
    const { text } = await readUntil(first.stderr, /part 1 of 5 stored/);
    first.kill("SIGKILL");
    await first.status;
    await first.stdout.cancel();
    await first.stderr.cancel();
    assert.doesNotMatch(text, /resuming/);

    const second = await cli(data, "upload", file, "--part-size", "5MiB", "-v");
    assert.strictEqual(second.code, 0, second.err);
    assert.strictEqual(second.out, `${hash}\n`);
    const resumed = second.err.match(
      /resuming upload \w+: (\d) of 5 parts already complete/,
    );
    assert(resumed, second.err);
    const done = Number(resumed[1]);
    assert(done >= 1 && done <= 5, second.err);
    // Only the parts not complete before were stored this time.
    assert.strictEqual(
      second.err.match(/part \d of 5 stored/g)?.length ?? 0,
      5 - done,
    );

    const stat = await cli(data, "stat", hash);
    assert.match(stat.out, /^kind {2}multipart, 5 parts$/m);
    assert.match(stat.out, /^size {2}26214400 /m);
    const got = await cli(data, "get", hash, "--range", "5242870-5242889");
    assert.deepStrictEqual(got.stdout, content.subarray(5242870, 5242890));

    // A third run starts a new upload (the state was forgotten) and ends on the same hash.
    const again = await cli(data, "upload", file, "--part-size", "5MiB");
    assert.strictEqual(again.out, `${hash}\n`);
    assert.doesNotMatch(again.err, /resuming/);

    // The server on the same data directory serves the blob by its hash.
    const server = command(data, ["serve", "--port", "0"]).spawn();
    try {
      const { text } = await readUntil(server.stderr, /data in .*\n/);
      const port = text.match(/listening on http:\/\/127\.0\.0\.1:(\d+)\//)![1];
      const res = await fetch(`http://127.0.0.1:${port}/blobs/${hash}`, {
        headers: { range: "bytes=10485750-10485769" },
      });
      assert.strictEqual(res.status, 206);
      assert.strictEqual(
        res.headers.get("content-range"),
        `bytes 10485750-10485769/${content.length}`,
      );
      assert.deepStrictEqual(
        new Uint8Array(await res.arrayBuffer()),
        content.subarray(10485750, 10485770),
      );
    } finally {
      server.kill("SIGTERM");
      assert.strictEqual((await server.status).code, 0);
      await server.stdout.cancel();
      await server.stderr.cancel();
    }
  });
});

Deno.test("cli: upload refuses a part size outside the store's limits before starting", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const file = join(dir, "three.bin");
    await Deno.writeFile(file, bytesOf(3 * MiB, 7));
    for (
      const [given, expected] of [
        [
          "1M",
          /--part-size 1M is too small: expected at least 5242880 bytes \(5\.0 MiB, the store's minimum part size\), got 1048576 bytes \(1\.0 MiB\)/,
        ],
        [
          "5G",
          /--part-size 5G is too large: expected at most 4294967294 bytes \(4\.0 GiB, the store's maximum part size\), got 5368709120 bytes \(5\.0 GiB\)/,
        ],
      ] as const
    ) {
      const res = await cli(data, "upload", file, "--part-size", given);
      assert.strictEqual(res.code, 2, res.err);
      assert.match(res.err, expected);
      assert.match(res.err, /\nRun 'blobstore --help' for usage\.\n$/);
      assert.strictEqual(res.out, "");
    }
    await assert.rejects(
      Deno.stat(join(data, "cli-uploads")),
      Deno.errors.NotFound,
      "no resume state is written",
    );
    const seams = await openSeams({ data });
    try {
      for await (const upload of seams.catalog.uploads()) {
        assert.fail(`an upload was recorded: ${upload.id}`);
      }
      assert.strictEqual((await hashesIn(seams.catalog)).size, 0);
    } finally {
      await seams.close();
    }
  });
});

Deno.test("cli: --max-parts, else BLOBSTORE_MAX_PARTS, sets the parts an upload may have", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const file = join(dir, "eleven.bin");
    const bytes = bytesOf(11 * MiB, 5);
    await Deno.writeFile(file, bytes);
    const upload = ["upload", file, "--part-size", "5M"];
    const tooMany = /too many parts \(at most 2, got 3\)/;
    let res = await cli(data, "--max-parts", "2", ...upload);
    assert.strictEqual(res.code, 2, res.err);
    assert.match(res.err, tooMany);
    res = await cliWith({ BLOBSTORE_MAX_PARTS: "2" }, data, ...upload);
    assert.strictEqual(res.code, 2, res.err);
    assert.match(res.err, tooMany);
    res = await cliWith({ BLOBSTORE_MAX_PARTS: "lots" }, data, ...upload);
    assert.strictEqual(res.code, 1, res.err);
    assert.strictEqual(
      res.err,
      'blobstore: invalid BLOBSTORE_MAX_PARTS "lots" (expected a whole number from 1 to 10000)\n',
    );
    res = await cli(data, "--max-parts", "10001", ...upload);
    assert.strictEqual(res.code, 2, res.err);
    assert.match(
      res.err,
      /^blobstore: invalid --max-parts "10001" \(expected a whole number from 1 to 10000\)\n/,
    );
    // The flag wins over the variable.
    res = await cliWith(
      { BLOBSTORE_MAX_PARTS: "2" },
      data,
      "--max-parts",
      "3",
      ...upload,
    );
    assert.strictEqual(res.code, 0, res.err);
    assert.strictEqual(res.out, `${sha384Hex(bytes)}\n`);
  });
});

Deno.test("openSeams: maxParts, else BLOBSTORE_MAX_PARTS, else 400; 1 to 10,000", async () => {
  const open = (options: { maxParts?: number; env?: string }) =>
    openSeams({
      data: "unused",
      memory: true,
      maxParts: options.maxParts,
      env: (name) => name === "BLOBSTORE_MAX_PARTS" ? options.env : undefined,
    });
  for (
    const [options, expected] of [
      [{}, 400],
      [{ env: "" }, 400],
      [{ env: "10000" }, 10_000],
      [{ env: " 7 " }, 7],
      [{ maxParts: 1, env: "9" }, 1],
      [{ maxParts: 10_000 }, 10_000],
    ] as const
  ) {
    const seams = await open(options);
    assert.strictEqual(seams.store.maxParts, expected, JSON.stringify(options));
    await seams.close();
  }
  for (
    const [options, message] of [
      [{ maxParts: 0 }, 'invalid maxParts "0"'],
      [{ maxParts: 10_001 }, 'invalid maxParts "10001"'],
      [{ maxParts: 2.5 }, 'invalid maxParts "2.5"'],
      [{ env: "0x10" }, 'invalid BLOBSTORE_MAX_PARTS "0x10"'],
      [{ env: "-1" }, 'invalid BLOBSTORE_MAX_PARTS "-1"'],
    ] as const
  ) {
    await assert.rejects(
      open(options),
      (err) =>
        err instanceof BadParamsError &&
        err.message ===
          `${message} (expected a whole number from 1 to 10000)`,
      JSON.stringify(options),
    );
  }
});

Deno.test("cli: serve --max-parts takes part numbers up to it, and says so", async () => {
  await withTempDir(async (dir) => {
    const server = command(join(dir, "data"), [
      "--max-parts",
      "10000",
      "serve",
      "--port",
      "0",
    ]).spawn();
    try {
      const { text } = await readUntil(
        server.stderr,
        /uploads may have up to 10000 parts\n/,
      );
      const base = `http://127.0.0.1:${text.match(/:(\d+)\//)![1]}`;
      const created = await fetch(`${base}/uploads`, {
        method: "POST",
        body: "{}",
      });
      assert.strictEqual(created.status, 201);
      const { id } = await created.json();
      const body = new TextEncoder().encode("the last part\n");
      const put = (n: number) =>
        fetch(
          `${base}/uploads/${id}/parts/${n}?hash=${sha384Hex(body)}&offset=${
            n * 5 * MiB
          }`,
          { method: "PUT", body },
        );
      const beyondDefault = await put(9999);
      assert.strictEqual(beyondDefault.status, 200, await beyondDefault.text());
      const beyondMax = await put(10_000);
      assert.strictEqual(beyondMax.status, 400);
      assert.match(await beyondMax.text(), /part number 10000 too big/);
    } finally {
      server.kill("SIGINT");
      assert.strictEqual((await server.status).code, 0);
      await server.stdout.cancel();
      await server.stderr.cancel();
    }
  });
});

/**
 * Starts `serve` on a free port and a PUT of `body` whose last byte is
 * held back, so that the request stays open; resolves, once the server is
 * reading that body, to the server, the connection and a function sending
 * the last byte.
 */
async function serveWithOpenPut(data: string, body: Uint8Array) {
  const server = command(data, ["serve", "--port", "0"]).spawn();
  const { text } = await readUntil(server.stderr, /data in .*\n/);
  const port = Number(text.match(/127\.0\.0\.1:(\d+)\//)![1]);
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  // The server says "100 Continue" when its handler first reads the body:
  // from then on the request is open.
  const head = `PUT /blobs/${sha384Hex(body)} HTTP/1.1\r\n` +
    `Host: 127.0.0.1\r\nContent-Length: ${body.length}\r\n` +
    "Expect: 100-continue\r\n\r\n";
  await connection.write(new TextEncoder().encode(head));
  assert.match(await readSome(connection), /^HTTP\/1\.1 100 Continue\r\n/);
  await connection.write(body.subarray(0, body.length - 1));
  return {
    server,
    connection,
    /** Sends the last byte and resolves to the response's status line. */
    async finish(): Promise<string> {
      await connection.write(body.subarray(body.length - 1));
      return (await readSome(connection)).split("\r\n")[0];
    },
  };
}

/** What one read from `connection` gives, as text. */
async function readSome(connection: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  const n = await connection.read(buffer);
  return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
}

/** The rest of `stream` as text. */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    text += chunk;
  }
  return text;
}

/** Whether `child` is still running `ms` from now. */
async function stillRunningAfter(
  child: Deno.ChildProcess,
  ms: number,
): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    child.status.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), ms);
    }),
  ]);
  clearTimeout(timer);
  return result;
}

Deno.test("cli: serve stops on a signal after its open requests; a repeat at once is the same stop, a later one ends it", async (t) => {
  await withTempDir(async (dir) => {
    const body = bytesOf(64 * 1024, 7);
    await t.step(
      "SIGINT twice at once: the open PUT finishes, exit 0",
      async () => {
        const { server, connection, finish } = await serveWithOpenPut(
          join(dir, "a"),
          body,
        );
        try {
          server.kill("SIGINT");
          await new Promise((resolve) => setTimeout(resolve, 5));
          server.kill("SIGINT");
          assert(
            await stillRunningAfter(server, 300),
            "the server must wait for its open request",
          );
          assert.strictEqual(await finish(), "HTTP/1.1 201 Created");
          const status = await server.status;
          const err = await readAll(server.stderr);
          assert.strictEqual(status.code, 0, err);
          assert.match(err, /blobstore: stopped\n/);
        } finally {
          connection.close();
          await server.stdout.cancel();
        }
        const stat = await cli(join(dir, "a"), "stat", sha384Hex(body));
        assert.strictEqual(stat.code, 0, stat.err);
      },
    );
    await t.step(
      "SIGTERM, then SIGINT a second later: exit 130 at once",
      async () => {
        const { server, connection } = await serveWithOpenPut(
          join(dir, "b"),
          body,
        );
        try {
          server.kill("SIGTERM");
          const running = await stillRunningAfter(server, 1100);
          if (running) server.kill("SIGINT");
          const status = await server.status;
          const err = await readAll(server.stderr);
          assert(running, `the server must wait for its open request: ${err}`);
          assert.strictEqual(status.code, 130, err);
          assert.match(err, /stopped without waiting for open requests/);
        } finally {
          connection.close();
          await server.stdout.cancel();
        }
      },
    );
  });
});

Deno.test("cli: gc keeps what is listed or recent, dry run first", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const files = { kept: "keep me\n", dropped: "drop me\n" };
    const hashes: Record<string, string> = {};
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(dir, name), text);
      hashes[name] = (await cli(data, "put", join(dir, name))).out.trim();
    }
    const big = join(dir, "parts.bin");
    await Deno.writeFile(big, bytesOf(6 * MiB, 6));
    const multipart = (await cli(data, "upload", big, "--part-size", "5MiB"))
      .out.trim();
    const keep = join(dir, "keep.txt");
    await Deno.writeTextFile(keep, `# blobs to keep\n${hashes.kept}\n\n`);

    const recent = await cli(
      data,
      "gc",
      "--keep",
      keep,
      "--before",
      "1h",
      "--dry-run",
    );
    assert.strictEqual(recent.code, 0, recent.err);
    assert.strictEqual(recent.out, "");

    const dry = await cli(
      data,
      "gc",
      "--keep",
      keep,
      "--before",
      "0s",
      "--dry-run",
    );
    assert.strictEqual(dry.code, 0, dry.err);
    const listed = dry.out.trim().split("\n").map((line) => line.split("\t")[0])
      .sort();
    assert.strictEqual(listed.length, 3); // the dropped blob and the two parts
    assert(listed.includes(hashes.dropped));
    assert(!listed.includes(hashes.kept));
    assert.match(dry.err, /would release 1 multipart blobs and remove 3 blobs/);
    assert.strictEqual((await cli(data, "stat", hashes.dropped)).code, 0);

    // An object a crashed put left behind two hours ago: bytes, no reference.
    const orphan = new TextEncoder().encode("orphan");
    const orphanHash = sha384Hex(orphan);
    const name = `${orphanHash}-0123456789abcdef`;
    await new FileBackend(join(data, "blobs")).put(
      name,
      new Blob([orphan]).stream(),
      orphan.length,
      orphanHash,
    );
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    const orphanPath = join(
      data,
      "blobs",
      name.slice(0, 2),
      name.slice(2, 4),
      name,
    );
    await Deno.utime(orphanPath, twoHoursAgo, twoHoursAgo);

    const real = await cli(data, "gc", "--keep", keep, "--before", "0s");
    assert.strictEqual(real.code, 0, real.err);
    assert.match(
      real.err,
      /released 1 multipart blobs; removed 3 blobs; kept 1 .*; swept 1 orphaned objects/,
    );
    await assert.rejects(Deno.stat(orphanPath), Deno.errors.NotFound);
    assert.strictEqual((await cli(data, "stat", hashes.kept)).code, 0);
    assert.strictEqual((await cli(data, "stat", hashes.dropped)).code, 1);
    assert.strictEqual((await cli(data, "stat", multipart)).code, 1);

    const badKeep = join(dir, "bad.txt");
    await Deno.writeTextFile(badKeep, "not-a-hash\n");
    const bad = await cli(data, "gc", "--keep", badKeep, "--before", "0s");
    assert.strictEqual(bad.code, 2);
    assert.match(bad.err, /bad\.txt:1: invalid hash/);
  });
});

/**
 * `catalog` as is, but `action` runs (once) when GC first removes a
 * reference: after the references were listed, before the removal ends.
 */
function onFirstRemoval(
  catalog: Catalog,
  action: () => Promise<void>,
): Catalog {
  let ran: Promise<void> | undefined;
  const first = () => ran ??= action();
  return new Proxy(catalog, {
    get(target, key) {
      const value = Reflect.get(target, key, target);
      if (typeof value !== "function") return value;
      if (key !== "removeRef" && key !== "removeRefs") {
        return value.bind(target);
      }
      return async (...args: unknown[]) => {
        await first();
        return await value.apply(target, args);
      };
    },
  });
}

async function hashesIn(catalog: Catalog): Promise<Set<string>> {
  const hashes = new Set<string>();
  for await (const ref of catalog.refsPutBefore(new Date(8.64e15))) {
    hashes.add(ref.hash);
  }
  return hashes;
}

async function putAll(store: Store, blobs: Uint8Array[]): Promise<string[]> {
  const hashes = [];
  for (const bytes of blobs) {
    const hash = sha384Hex(bytes);
    await store.put(bytes, hash, bytes.length);
    hashes.push(hash);
  }
  return hashes;
}

Deno.test("cli: gc beside concurrent puts reports exactly the blobs it removed", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const seams = await openSeams({ data });
    try {
      const [kept, ...garbage] = await putAll(
        seams.store,
        [1, 2, 3].map((seed) => bytesOf(100, seed)),
      );
      const keep = join(dir, "keep.txt");
      await Deno.writeTextFile(keep, `${kept}\n`);
      // A busy server: more new blobs are put while GC removes the old.
      const fresh = [4, 5, 6, 7, 8].map((seed) => bytesOf(100, seed));
      let freshHashes: string[] = [];
      const catalog = onFirstRemoval(seams.catalog, async () => {
        freshHashes = await putAll(seams.store, fresh);
      });
      const store = new Store({ catalog, backend: seams.backend });
      const lines: string[] = [];
      const context: StoreContext = {
        data,
        print: (line) => lines.push(line),
        warn: (line) => lines.push(line),
        seams: { ...seams, catalog, store },
        blobs: new MultipartBlobs(store),
      };
      const run = (...args: string[]) =>
        gcCommand.run(context, parseArgs(args, gcCommand.options));

      assert.strictEqual(
        await run("--keep", keep, "--before", "0s", "--dry-run"),
        0,
      );
      assert.deepStrictEqual(
        lines.slice(0, -1).sort(),
        [
          ...garbage.map((hash) => `${hash}\t100`),
        ].sort(),
      );
      assert.match(
        lines.at(-1)!,
        /would release 0 multipart blobs and remove 2 blobs/,
      );

      lines.length = 0;
      const before = await hashesIn(seams.catalog);
      assert.strictEqual(await run("--keep", keep, "--before", "0s"), 0);
      const after = await hashesIn(seams.catalog);
      assert.strictEqual(
        freshHashes.length,
        fresh.length,
        "no puts ran during GC",
      );
      const gone = [...before].filter((hash) => !after.has(hash));
      assert.deepStrictEqual(gone.sort(), [...garbage].sort());
      for (const hash of [kept, ...freshHashes]) assert(after.has(hash), hash);
      const removed = lines.join("\n").match(/removed (-?\d+) blobs/);
      assert(removed, lines.join("\n"));
      assert(Number(removed[1]) >= 0, lines.join("\n"));
      assert.strictEqual(Number(removed[1]), gone.length, lines.join("\n"));
      assert.match(lines.join("\n"), /kept 1 /);
    } finally {
      await seams.close();
    }
  });
});

Deno.test("cli: serve prints where it listens and where the data lives, and persists", async () => {
  await withTempDir(async (dir) => {
    const data = join(dir, "data");
    const content = new TextEncoder().encode("persistent\n");
    const hash = sha384Hex(content);
    for (const round of [1, 2]) {
      const server = command(data, ["serve", "--port", "0"]).spawn();
      try {
        const { text } = await readUntil(server.stderr, /data in .*\n/);
        assert.match(
          text,
          /^blobstore: listening on http:\/\/127\.0\.0\.1:\d+\/$/m,
        );
        assert.match(
          text,
          /data in .*data \(catalog: Deno KV in .*catalog\.kv; blobs: files under .*blobs\)/,
        );
        const base = `http://127.0.0.1:${text.match(/:(\d+)\//)![1]}`;
        if (round === 1) {
          const put = await fetch(`${base}/blobs/${hash}`, {
            method: "PUT",
            body: content,
          });
          assert.strictEqual(put.status, 201);
          await put.body?.cancel();
        } else {
          const res = await fetch(`${base}/blobs/${hash}`);
          assert.strictEqual(await res.text(), "persistent\n");
        }
      } finally {
        server.kill("SIGINT");
        assert.strictEqual((await server.status).code, 0);
        await server.stdout.cancel();
        await server.stderr.cancel();
      }
    }
  });
});

Deno.test("server config: BLOBSTORE_HASHING picks where the store hashes; anything else is refused", async () => {
  for (
    const [text, hashing] of [["", "auto"], ["inline", "inline"], [
      "worker",
      "worker",
    ], ["auto", "auto"]]
  ) {
    const seams = await openSeams({
      data: "unused",
      memory: true,
      env: (name) => name === "BLOBSTORE_HASHING" ? text : undefined,
    });
    assert.strictEqual(seams.store.hashing, hashing);
    await seams.close();
  }
  await assert.rejects(
    openSeams({
      data: "unused",
      memory: true,
      env: (name) => name === "BLOBSTORE_HASHING" ? "gpu" : undefined,
    }),
    /invalid BLOBSTORE_HASHING "gpu" \(expected auto, inline or worker\)/,
  );
});
