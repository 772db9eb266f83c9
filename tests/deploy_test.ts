/**
 * The Deno Deploy entry, `examples/deploy.ts`, run by `deno serve` with the
 * least permissions the README states, three times over one KV file: the
 * cross-isolate case of Deploy, where one upload's parts and finish reach
 * different isolates and a third serves the blob.
 *
 * Each process gets exactly `--unstable-kv`, `--allow-env` for the four
 * variables the entry reads, and read and write access to the KV file; no
 * `--allow-net` (`deno serve` may listen on its own address without it).
 * A second test takes each grant away in turn and sees the entry fail.
 */

import assert from "node:assert";
import { join } from "node:path";
import { bytesOf, hashOf } from "./helpers.ts";

const ENTRY = new URL("../examples/deploy.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

/** The variables the entry reads by default: its whole `--allow-env`. */
const ENV_READ = [
  "BLOBSTORE_KV_PATH",
  "BLOBSTORE_TOKEN",
  "S3_BUCKET",
  "SWIFT_AUTH_URL",
];

/** The README's command line for a KV file at `kvPath`. */
function leastPermissions(kvPath: string): string[] {
  return [
    "--unstable-kv",
    `--allow-env=${ENV_READ.join(",")}`,
    `--allow-read=${kvPath}`,
    `--allow-write=${kvPath}`,
  ];
}

const TOKEN = crypto.randomUUID();
const auth = { authorization: `Bearer ${TOKEN}` };

interface Served {
  url: string;
  /** Everything the process wrote to stderr so far. */
  output(): string;
  close(): Promise<void>;
}

/**
 * Starts `deno serve` on the entry with `permissions` on a free port of
 * 127.0.0.1, and returns once it answers `GET /`. Throws, with what the
 * process wrote, when it exits first.
 */
async function serve(
  permissions: string[],
  env: Record<string, string>,
): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "serve",
      "--no-prompt",
      ...permissions,
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      ENTRY,
    ],
    cwd: ROOT,
    clearEnv: true,
    env: { ...denoOwnEnv(), NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      text += decoder.decode(chunk, { stream: true });
    }
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const close = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await reading;
  };
  try {
    const deadline = Date.now() + 60_000;
    let port: string | undefined;
    while (!port) {
      port = text.match(/Listening on http:\/\/127\.0\.0\.1:(\d+)\//)?.[1];
      if (port) break;
      if (exited) throw new Error(`deno serve exited:\n${text}`);
      if (Date.now() > deadline) throw new Error(`no listen line:\n${text}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const url = `http://127.0.0.1:${port}`;
    const res = await fetch(`${url}/`);
    assert.strictEqual(res.status, 200, text);
    assert.strictEqual((await res.json()).service, "blobstore");
    return { url, output: () => text, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What Deno itself needs to find its cache (not read by the entry). */
function denoOwnEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "PATH"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

async function ok(res: Response, status: number, what: string) {
  if (res.status !== status) {
    throw new Error(`${what}: ${res.status} ${await res.text()}`);
  }
  return res;
}

Deno.test("deploy: three deno serve processes on one KV, least permissions", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-deploy-" });
  const kvPath = join(dir, "blobs.kv");
  const permissions = leastPermissions(kvPath);
  // Nothing broad: the documented set and only it.
  assert.deepStrictEqual(
    permissions.filter((flag) =>
      /^(-A|--allow-all|--allow-net|--allow-run|--allow-sys|--allow-ffi|--allow-import)\b/
        .test(flag) || /^--allow-(read|write|env)$/.test(flag)
    ),
    [],
  );
  const servers: Served[] = [];
  try {
    const env = { BLOBSTORE_KV_PATH: kvPath, BLOBSTORE_TOKEN: TOKEN };
    const started = await Promise.allSettled(
      [0, 1, 2].map(() => serve(permissions, env)),
    );
    for (const result of started) {
      if (result.status === "fulfilled") servers.push(result.value);
    }
    for (const result of started) {
      if (result.status === "rejected") throw result.reason;
    }
    const [a, b, c] = servers.map((s) => s.url);

    await t.step("a single PUT on A is read from C", async () => {
      const bytes = bytesOf(100_000, 3);
      const hash = hashOf(bytes);
      const denied = await fetch(`${a}/blobs/${hash}`, {
        method: "PUT",
        body: bytes,
      });
      await ok(denied, 401, "PUT without the token");
      await denied.body?.cancel();
      const put = await fetch(`${a}/blobs/${hash}`, {
        method: "PUT",
        headers: auth,
        body: bytes,
      });
      await (await ok(put, 201, "PUT on A")).body?.cancel();
      const got = await ok(await fetch(`${c}/blobs/${hash}`), 200, "GET on C");
      assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), bytes);
    });

    await t.step(
      "a multipart upload: parts on A and B, finish on B, GET and Range GET on C",
      async () => {
        const first = bytesOf(5 * 1024 * 1024, 11); // the least part but the last
        const last = bytesOf(70_001, 12);
        const whole = new Uint8Array(first.length + last.length);
        whole.set(first);
        whole.set(last, first.length);
        const hash = hashOf(whole);

        const created = await ok(
          await fetch(`${a}/uploads`, { method: "POST", headers: auth }),
          201,
          "POST /uploads on A",
        );
        const { id } = await created.json();
        const putPart = async (
          server: string,
          n: number,
          bytes: Uint8Array<ArrayBuffer>,
          offset: number,
        ) => {
          const res = await fetch(
            `${server}/uploads/${id}/parts/${n}?hash=${
              hashOf(bytes)
            }&offset=${offset}`,
            { method: "PUT", headers: auth, body: bytes },
          );
          await (await ok(res, 200, `part ${n}`)).body?.cancel();
        };
        await putPart(a, 0, first, 0);
        await putPart(b, 1, last, first.length);

        const finished = await ok(
          await fetch(`${b}/uploads/${id}/finish`, {
            method: "POST",
            headers: { ...auth, "content-type": "application/json" },
            body: JSON.stringify({
              parts: [{ hash: hashOf(first) }, { hash: hashOf(last) }],
            }),
          }),
          200,
          "finish on B",
        );
        const result = await finished.json();
        assert.strictEqual(result.hash, hash);
        assert.strictEqual(result.size, whole.length);

        const got = await ok(
          await fetch(`${c}/blobs/${hash}`),
          200,
          "GET on C",
        );
        assert.strictEqual(got.headers.get("etag"), `"${hash}"`);
        assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), whole);

        // A range across the boundary between the parts.
        const start = first.length - 1000;
        const end = first.length + 999;
        const ranged = await ok(
          await fetch(`${c}/blobs/${hash}`, {
            headers: { range: `bytes=${start}-${end}` },
          }),
          206,
          "Range GET on C",
        );
        assert.strictEqual(
          ranged.headers.get("content-range"),
          `bytes ${start}-${end}/${whole.length}`,
        );
        assert.deepStrictEqual(
          new Uint8Array(await ranged.arrayBuffer()),
          whole.slice(start, end + 1),
        );
      },
    );

    for (const server of servers) {
      assert.doesNotMatch(server.output(), /NotCapable|PermissionDenied/);
    }
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy: each grant is needed", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-deploy-" });
  const kvPath = join(dir, "blobs.kv");
  const env = { BLOBSTORE_KV_PATH: kvPath, BLOBSTORE_TOKEN: TOKEN };
  const without = (flag: string, replacement?: string) =>
    leastPermissions(kvPath).flatMap((f) =>
      f.startsWith(flag) ? (replacement ? [replacement] : []) : [f]
    );
  try {
    for (
      const [name, flags, message] of [
        [
          "no write access to the KV file",
          without("--allow-write"),
          /write access to ".*blobs\.kv"/,
        ],
        [
          "no read access to the KV file",
          without("--allow-read"),
          /read access to ".*blobs\.kv"/,
        ],
        [
          "S3_BUCKET not readable",
          without(
            "--allow-env",
            "--allow-env=BLOBSTORE_KV_PATH,BLOBSTORE_TOKEN,SWIFT_AUTH_URL",
          ),
          /env access to "S3_BUCKET"/,
        ],
      ] as const
    ) {
      await t.step(`${name}: the entry does not start`, async () => {
        const err = await serve(flags, env).then(
          async (served) => {
            await served.close();
            return undefined;
          },
          (err: Error) => err,
        );
        assert(err, "it started");
        assert.match(err.message, /NotCapable/);
        assert.match(err.message, message);
      });
    }

    await t.step(
      "BLOBSTORE_TOKEN not readable: it starts, and every write is refused",
      async () => {
        const served = await serve(
          without(
            "--allow-env",
            "--allow-env=BLOBSTORE_KV_PATH,S3_BUCKET,SWIFT_AUTH_URL",
          ),
          env,
        );
        try {
          const res = await fetch(`${served.url}/uploads`, {
            method: "POST",
            headers: auth,
          });
          assert.strictEqual(res.status, 503);
          assert.strictEqual((await res.json()).error, "auth_unavailable");
        } finally {
          await served.close();
        }
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
