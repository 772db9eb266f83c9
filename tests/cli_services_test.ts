/**
 * `MONGODB_URL` and the `SWIFT_*` variables switch the CLI and the server
 * from the embedded default to the MongoDB catalog and GridFS backend, or
 * to the Swift backend: the same commands, run against the local FerretDB
 * and Swift that `deno task test` starts. Each run uses a fresh database
 * or container and removes it afterwards.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { MongoClient } from "mongodb";
import { S3Backend } from "../s3.ts";
import {
  MONGODB_URL,
  S3_ACCESS_KEY,
  S3_ENDPOINT,
  S3_REGION,
  S3_SECRET_KEY,
  s3Available,
  serviceAvailable,
} from "./services.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const MiB = 1024 * 1024;
const SWIFT = {
  authURL: Deno.env.get("SWIFT_AUTH_URL") ?? "http://127.0.0.1:8390/auth/v1.0",
  tenant: "test",
  username: "tester",
  secret: "testing",
};

const mongoOk = await serviceAvailable("FerretDB (MongoDB)", async () => {
  const client = new MongoClient(MONGODB_URL, {
    serverSelectionTimeoutMS: 3000,
  });
  try {
    await client.connect();
    await client.db("admin").command({ ping: 1 });
  } finally {
    await client.close();
  }
});
const s3ok = await s3Available();
const swiftOk = await serviceAvailable("Swift", async () => {
  await (await swiftSession()).cancel();
});

async function swiftSession() {
  const res = await fetch(SWIFT.authURL, {
    headers: {
      "X-Auth-User": `${SWIFT.tenant}:${SWIFT.username}`,
      "X-Auth-Key": SWIFT.secret,
    },
    signal: AbortSignal.timeout(5000),
  });
  await res.body?.cancel();
  if (!res.ok) throw new Error(`Swift auth answered ${res.status}`);
  const storageURL = res.headers.get("x-storage-url")!;
  const token = res.headers.get("x-auth-token")!;
  return { storageURL, token, cancel: () => Promise.resolve() };
}

async function removeContainer(name: string): Promise<void> {
  const { storageURL, token } = await swiftSession();
  const headers = { "X-Auth-Token": token };
  for (const container of [name, `${name}_segments`]) {
    const list = await fetch(`${storageURL}/${container}?format=json`, {
      headers,
    });
    if (list.status !== 200) {
      await list.body?.cancel();
      continue;
    }
    for (const { name: object } of await list.json() as { name: string }[]) {
      const res = await fetch(
        `${storageURL}/${container}/${encodeURIComponent(object)}`,
        {
          method: "DELETE",
          headers,
        },
      );
      await res.body?.cancel();
    }
    await (await fetch(`${storageURL}/${container}`, {
      method: "DELETE",
      headers,
    })).body
      ?.cancel();
  }
}

function cli(env: Record<string, string>, data: string, ...args: string[]) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, "--data", data, ...args],
    env: {
      MONGODB_URL: "",
      SWIFT_AUTH_URL: "",
      S3_BUCKET: "",
      BLOBSTORE_TOKEN: "",
      ...env,
    },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

async function run(
  env: Record<string, string>,
  data: string,
  ...args: string[]
) {
  const { code, stdout, stderr } = await cli(env, data, ...args).output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout,
    out: decoder.decode(stdout),
    err: decoder.decode(stderr),
  };
}

/** put, a multipart upload, stat, get, and the server reading both over HTTP. */
async function exercise(
  env: Record<string, string>,
  expectStatus: RegExp,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "blobstore-cli-services-" });
  const data = join(dir, "data");
  try {
    const small = new TextEncoder().encode("hello, services\n");
    const large = new Uint8Array(6 * MiB).map((_, i) => (i * 7) & 0xff);
    await Deno.writeFile(join(dir, "small.txt"), small);
    await Deno.writeFile(join(dir, "large.bin"), large);
    const smallHash = createHash("sha384").update(small).digest("hex");
    const largeHash = createHash("sha384").update(large).digest("hex");

    const put = await run(env, data, "put", join(dir, "small.txt"));
    assert.strictEqual(put.code, 0, put.err);
    assert.strictEqual(put.out, `${smallHash}\n`);
    const upload = await run(
      env,
      data,
      "upload",
      join(dir, "large.bin"),
      "--part-size",
      "5MiB",
    );
    assert.strictEqual(upload.code, 0, upload.err);
    assert.strictEqual(upload.out, `${largeHash}\n`);
    const stat = await run(env, data, "stat", "--json", largeHash);
    assert.deepStrictEqual(JSON.parse(stat.out), {
      hash: largeHash,
      size: large.length,
      parts: 2,
    });
    const get = await run(env, data, "get", smallHash);
    assert.deepStrictEqual(get.stdout, small);

    const server = cli(env, data, "serve", "--port", "0").spawn();
    try {
      const reader = server.stderr.pipeThrough(new TextDecoderStream())
        .getReader();
      let text = "";
      while (!/blobs: .*\)\n/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`serve exited: ${text}`);
        text += value;
      }
      reader.releaseLock();
      assert.match(text, expectStatus);
      const port = text.match(/127\.0\.0\.1:(\d+)\//)![1];
      const res = await fetch(`http://127.0.0.1:${port}/blobs/${largeHash}`, {
        headers: { range: `bytes=${5 * MiB - 2}-${5 * MiB + 1}` },
      });
      assert.strictEqual(res.status, 206);
      assert.deepStrictEqual(
        new Uint8Array(await res.arrayBuffer()),
        large.subarray(5 * MiB - 2, 5 * MiB + 2),
      );
    } finally {
      server.kill("SIGTERM");
      await server.status;
      await server.stdout.cancel();
      await server.stderr.cancel().catch(() => {});
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "cli: MONGODB_URL switches to the MongoDB catalog and GridFS",
  ignore: !mongoOk,
  async fn() {
    const dbName = `blobstore_cli_${crypto.randomUUID().slice(0, 8)}`;
    const url = new URL(MONGODB_URL);
    url.pathname = `/${dbName}`;
    try {
      await exercise(
        { MONGODB_URL: url.href },
        new RegExp(
          `data \\(catalog: MongoDB database ${dbName} .*; blobs: GridFS `,
        ),
      );
    } finally {
      const client = await new MongoClient(MONGODB_URL).connect();
      await client.db(dbName).dropDatabase();
      await client.close();
    }
  },
});

Deno.test({
  name: "cli: SWIFT_* switch the bytes to Swift",
  ignore: !swiftOk,
  async fn() {
    const bucket = `blobstore-cli-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await exercise(
        {
          SWIFT_AUTH_URL: SWIFT.authURL,
          SWIFT_TENANT: SWIFT.tenant,
          SWIFT_USERNAME: SWIFT.username,
          SWIFT_SECRET: SWIFT.secret,
          SWIFT_BUCKET: bucket,
        },
        new RegExp(
          `data in .* \\(catalog: Deno KV in .*; blobs: Swift container ${bucket} `,
        ),
      );
    } finally {
      await removeContainer(bucket);
    }
  },
});

Deno.test({
  name: "cli: S3_BUCKET and the AWS_* variables switch the bytes to S3",
  ignore: !s3ok,
  async fn() {
    const bucket = `blobstore-cli-${crypto.randomUUID().slice(0, 8)}`;
    const env = {
      S3_BUCKET: bucket,
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
      AWS_REGION: S3_REGION,
      AWS_ENDPOINT_URL_S3: S3_ENDPOINT,
    };
    try {
      await exercise(
        env,
        new RegExp(
          `data in .* \\(catalog: Deno KV in .*; blobs: S3 bucket ${bucket} at `,
        ),
      );
    } finally {
      const backend = new S3Backend({
        endpoint: S3_ENDPOINT,
        region: S3_REGION,
        bucket,
        accessKeyId: S3_ACCESS_KEY,
        secretAccessKey: S3_SECRET_KEY,
      });
      const names = [];
      for await (const { name } of backend.list()) names.push(name);
      await backend.removeMany(names);
    }
  },
});

Deno.test("cli: an incomplete S3 configuration is an error that names what is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const res = await run(
      { S3_BUCKET: "blobs" },
      join(dir, "data"),
      "stat",
      "0".repeat(96),
    );
    assert.strictEqual(res.code, 1);
    assert.match(
      res.err,
      /missing AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: an incomplete Swift configuration is an error that names what is missing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const res = await run(
      { SWIFT_AUTH_URL: SWIFT.authURL },
      join(dir, "data"),
      "stat",
      "0".repeat(96),
    );
    assert.strictEqual(res.code, 1);
    assert.match(res.err, /missing SWIFT_USERNAME, SWIFT_SECRET, SWIFT_BUCKET/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
