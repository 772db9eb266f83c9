/**
 * The Deno Deploy entry, `examples/deploy.ts`, run by `deno serve` with the
 * least permissions the README states, three times over one KV file: the
 * cross-isolate case of Deploy, where one upload's parts and finish reach
 * different isolates and a third serves the blob.
 *
 * Each process gets exactly `--unstable-kv`, `--allow-env` for the six
 * variables the entry reads, and read and write access to the KV file; no
 * `--allow-net` (`deno serve` may listen on its own address without it):
 * the command line of the README's "Deno Deploy" section, checked against
 * it. A second test takes each grant away in turn and sees the entry fail,
 * shows the process cannot reach the network, and that a half-configured
 * S3 or Swift backend is named.
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
  "BLOBSTORE_CORS_ORIGINS",
  "BLOBSTORE_MAX_PARTS",
  "S3_BUCKET",
  "SWIFT_AUTH_URL",
];

/** What the entry reads besides with S3, then with Swift configured. */
const S3_ENV = [
  "S3_BUCKET",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_SESSION_TOKEN",
  "AWS_REGION",
  "AWS_ENDPOINT_URL_S3",
];
const SWIFT_ENV = [
  "SWIFT_AUTH_URL",
  "SWIFT_USERNAME",
  "SWIFT_SECRET",
  "SWIFT_BUCKET",
  "SWIFT_TENANT",
  "SWIFT_REGION",
  "SWIFT_ENDPOINT_URL",
];

/** The README's command line for a KV file at `kvPath`. */
function leastPermissions(kvPath: string, env = ENV_READ): string[] {
  return [
    "--unstable-kv",
    `--allow-env=${[...new Set(env)].join(",")}`,
    `--allow-read=${kvPath}`,
    `--allow-write=${kvPath}`,
  ];
}

/**
 * The permission flags of the `deno serve` command in the README's "Deno
 * Deploy" section, its KV file replaced by `kvPath`.
 */
async function readmePermissions(kvPath: string): Promise<string[]> {
  const readme = await Deno.readTextFile(join(ROOT, "README.md"));
  const section = readme.match(/^## Deno Deploy\s*$([\s\S]*?)(?=^## )/m)?.[1];
  const command = section?.match(/^```sh\n([^`]*deno serve[^`]*)^```$/m)?.[1];
  assert(command, "the README's Deno Deploy section has no deno serve command");
  return command.split(/\s+/)
    .filter((word) => word.startsWith("--") && word !== "--port")
    .map((flag) => flag.replaceAll("./data/deploy.kv", kvPath));
}

/** Starts the entry with `permissions`; returns why it did not start. */
async function failure(
  permissions: string[],
  env: Record<string, string>,
): Promise<string> {
  let served: Served;
  try {
    served = await serve(permissions, env);
  } catch (err) {
    return (err as Error).message;
  }
  await served.close();
  throw new Error("it started");
}

const TOKEN = crypto.randomUUID();
const auth = { authorization: `Bearer ${TOKEN}` };
/** The origin whose pages may call the service (`BLOBSTORE_CORS_ORIGINS`). */
const ORIGIN = "https://app.example";

/** A preflight from `ORIGIN` for a `PUT` with a token. */
function preflight(url: string): Promise<Response> {
  return fetch(`${url}/blobs/${"0".repeat(96)}`, {
    method: "OPTIONS",
    headers: {
      origin: ORIGIN,
      "access-control-request-method": "PUT",
      "access-control-request-headers": "authorization",
    },
  });
}

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
  // The documented set, and only it.
  assert.deepStrictEqual(await readmePermissions(kvPath), permissions);
  const servers: Served[] = [];
  try {
    const env = {
      BLOBSTORE_KV_PATH: kvPath,
      BLOBSTORE_TOKEN: TOKEN,
      BLOBSTORE_CORS_ORIGINS: ORIGIN,
      BLOBSTORE_MAX_PARTS: "10000",
    };
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
      "BLOBSTORE_MAX_PARTS=10000: part 9999 is taken, 10000 is not",
      async () => {
        const created = await ok(
          await fetch(`${a}/uploads`, { method: "POST", headers: auth }),
          201,
          "POST /uploads on A",
        );
        const { id } = await created.json();
        const body = bytesOf(1000, 13);
        const put = (n: number) =>
          fetch(
            `${b}/uploads/${id}/parts/${n}?hash=${hashOf(body)}&offset=${
              n * 5 * 1024 * 1024
            }`,
            { method: "PUT", headers: auth, body },
          );
        await (await ok(await put(9999), 200, "part 9999")).body?.cancel();
        const beyond = await put(10_000);
        assert.strictEqual(beyond.status, 400);
        assert.match(await beyond.text(), /part number 10000 too big/);
      },
    );

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

    await t.step("pages of BLOBSTORE_CORS_ORIGINS may call it", async () => {
      const pre = await preflight(b);
      await pre.body?.cancel();
      assert.strictEqual(pre.status, 204);
      assert.strictEqual(
        pre.headers.get("access-control-allow-origin"),
        ORIGIN,
      );
      const res = await fetch(`${c}/`, { headers: { origin: ORIGIN } });
      await res.body?.cancel();
      assert.strictEqual(
        res.headers.get("access-control-allow-origin"),
        ORIGIN,
      );
    });

    for (const server of servers) {
      assert.doesNotMatch(server.output(), /NotCapable|PermissionDenied/);
    }
  } finally {
    await Promise.all(servers.map((s) => s.close()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deploy: each grant is needed, and nothing more is granted", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-deploy-" });
  const kvPath = join(dir, "blobs.kv");
  const env = {
    BLOBSTORE_KV_PATH: kvPath,
    BLOBSTORE_TOKEN: TOKEN,
    BLOBSTORE_CORS_ORIGINS: ORIGIN,
  };
  const least = leastPermissions(kvPath);
  const without = (flag: string) => least.filter((f) => !f.startsWith(flag));
  const envWithout = (name: string) =>
    leastPermissions(kvPath, ENV_READ.filter((n) => n !== name));
  try {
    const cases: [string, string[], RegExp][] = [
      [
        "no write access to the KV file",
        without("--allow-write"),
        /NotCapable: Requires write access to ".*blobs\.kv"/,
      ],
      [
        "no read access to the KV file",
        without("--allow-read"),
        /NotCapable: Requires read access to ".*blobs\.kv"/,
      ],
      ...[
        "BLOBSTORE_KV_PATH",
        "BLOBSTORE_MAX_PARTS",
        "S3_BUCKET",
        "SWIFT_AUTH_URL",
      ].map((
        name,
      ): [string, string[], RegExp] => [
        `${name} not readable`,
        envWithout(name),
        new RegExp(`NotCapable: Requires env access to "${name}"`),
      ]),
    ];
    for (const [name, permissions, message] of cases) {
      await t.step(`${name}: the entry does not start`, async () => {
        assert.match(await failure(permissions, env), message);
      });
    }
    await t.step(
      "BLOBSTORE_MAX_PARTS out of range: the entry does not start",
      async () => {
        for (const value of ["0", "10001", "many"]) {
          assert.match(
            await failure(least, { ...env, BLOBSTORE_MAX_PARTS: value }),
            /invalid BLOBSTORE_MAX_PARTS .* \(expected a whole number from 1 to 10000\)/,
          );
        }
      },
    );

    await t.step(
      "BLOBSTORE_TOKEN not readable: it starts, and every write is refused",
      async () => {
        const served = await serve(envWithout("BLOBSTORE_TOKEN"), env);
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

    await t.step(
      "BLOBSTORE_CORS_ORIGINS not readable: it starts, and CORS stays off",
      async () => {
        const served = await serve(envWithout("BLOBSTORE_CORS_ORIGINS"), env);
        try {
          const pre = await preflight(served.url);
          await pre.body?.cancel();
          assert.notStrictEqual(pre.status, 204);
          assert.strictEqual(
            pre.headers.get("access-control-allow-origin"),
            null,
          );
        } finally {
          await served.close();
        }
      },
    );

    await t.step(
      "no network: S3 on 127.0.0.1 is out of reach without --allow-net",
      async () => {
        const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const { port } = listener.addr;
        let connections = 0;
        const accepting = (async () => {
          for await (const conn of listener) {
            connections++;
            conn.close();
          }
        })();
        const served = await serve(
          leastPermissions(kvPath, [...ENV_READ, ...S3_ENV]),
          {
            ...env,
            S3_BUCKET: "blobs",
            AWS_ACCESS_KEY_ID: "key",
            AWS_SECRET_ACCESS_KEY: "secret",
            AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`,
          },
        );
        try {
          const bytes = new TextEncoder().encode("unreachable");
          const res = await fetch(`${served.url}/blobs/${hashOf(bytes)}`, {
            method: "PUT",
            headers: auth,
            body: bytes,
          });
          await res.body?.cancel();
          assert.strictEqual(res.status, 500);
          assert.match(served.output(), /Requires net access to "127\.0\.0\.1/);
          assert.strictEqual(connections, 0);
        } finally {
          await served.close();
          listener.close();
          await accepting;
        }
      },
    );

    for (
      const [store, variables, missing] of [
        ["S3", S3_ENV, "AWS_ACCESS_KEY_ID"],
        ["Swift", SWIFT_ENV, "SWIFT_USERNAME"],
      ] as const
    ) {
      await t.step(
        `${store} configured without its credentials: it stops naming ${missing}`,
        async () => {
          const message = await failure(
            leastPermissions(kvPath, [...ENV_READ, ...variables]),
            {
              ...env,
              [variables[0]]: store === "S3" ? "blobs" : "http://x/v3",
            },
          );
          assert.match(
            message,
            new RegExp(`${missing} is not set \\(${variables[0]} needs it\\)`),
          );
        },
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
