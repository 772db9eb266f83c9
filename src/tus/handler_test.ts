/**
 * The tus endpoint through `createHandler`, in process: parts of 1 KiB so
 * that bodies cross many part boundaries, on the memory seams.
 */

import assert from "node:assert";
import { createHash } from "node:crypto";
import { bearerToken } from "../http/auth.ts";
import { createHandler, type HandlerOptions } from "../http/handler.ts";
import { MemoryBackend } from "../memory/backend.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { Store } from "../store.ts";
import { collect } from "../collect.ts";
import { MultipartBlobs } from "../multipart_blobs.ts";
import { Refs } from "../refs.ts";

const PART = 1024;
const TUS = { "tus-resumable": "1.0.0" };
const OCTET = "application/offset+octet-stream";

const hex = (bytes: Uint8Array) =>
  createHash("sha384").update(bytes).digest("hex");

function bytesOf(size: number, seed = 1): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) {
    bytes[i] = (i * 131 + seed * 17 + (i >> 7)) & 0xff;
  }
  return bytes;
}

interface Call {
  headers?: Record<string, string>;
  body?: BodyInit | null;
  tus?: boolean;
}

function service(options: HandlerOptions = {}, minPartSize = PART) {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
    minPartSize,
  });
  const errors: unknown[] = [];
  const handler = createHandler(store, {
    authorize: false,
    cors: false,
    onError: (err) => errors.push(err),
    tus: { partSize: PART },
    ...options,
  });
  const call = (method: string, path: string, init: Call = {}) =>
    handler(
      new Request(new URL(path, "http://x/"), {
        method,
        headers: { ...(init.tus === false ? {} : TUS), ...init.headers },
        body: init.body,
      }),
    );
  const create = async (
    length: number,
    headers: Record<string, string> = {},
  ) => {
    const res = await call("POST", "/tus/", {
      headers: { "upload-length": String(length), ...headers },
    });
    assert.strictEqual(res.status, 201, await res.clone().text());
    return res.headers.get("location")!;
  };
  const patch = (
    location: string,
    offset: number,
    body: BodyInit | null,
    headers: Record<string, string> = {},
  ) =>
    call("PATCH", location, {
      headers: {
        "content-type": OCTET,
        "upload-offset": String(offset),
        ...headers,
      },
      body,
    });
  const offsetOf = async (location: string) => {
    const res = await call("HEAD", location);
    assert.strictEqual(res.status, 200);
    return Number(res.headers.get("upload-offset"));
  };
  return { store, handler, errors, call, create, patch, offsetOf };
}

async function expectError(res: Response, status: number, code: string) {
  assert.strictEqual(res.status, status, `expected ${status}`);
  assert.strictEqual(res.headers.get("tus-resumable"), "1.0.0");
  const body = await res.json();
  assert.strictEqual(body.error, code, body.message);
  assert.strictEqual(typeof body.message, "string");
  return body.message as string;
}

Deno.test("tus: OPTIONS tells what the server supports, without credentials", async () => {
  const { call, errors } = service({
    authorize: bearerToken("s3cret"),
    maxBodySize: 123_456,
  });
  for (const path of ["/tus/", "/tus", "/tus/anything"]) {
    const res = await call("OPTIONS", path, { tus: false });
    assert.strictEqual(res.status, 204, path);
    assert.deepStrictEqual(
      Object.fromEntries(
        [...res.headers].filter(([name]) => name.startsWith("tus-")),
      ),
      {
        "tus-checksum-algorithm": "sha1,sha384",
        "tus-extension":
          "creation,creation-with-upload,expiration,termination,checksum",
        "tus-max-size": "123456",
        "tus-resumable": "1.0.0",
        "tus-version": "1.0.0",
      },
    );
  }
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: create, HEAD, PATCH in odd pieces across part boundaries, and the blob by hash", async (t) => {
  const { store, call, patch, offsetOf, errors } = service({
    tus: { partSize: PART, expiresInMs: 3600_000 },
  });
  const content = bytesOf(4 * PART + 904, 2);
  const hash = hex(content);
  const metadata = `filename ${btoa("data.bin")},flag`;
  let location = "";

  await t.step("POST: 201, Location, Upload-Expires an hour on", async () => {
    const before = Date.now();
    const res = await call("POST", "/tus/", {
      headers: {
        "upload-length": String(content.length),
        "upload-metadata": metadata,
      },
    });
    assert.strictEqual(res.status, 201);
    assert.strictEqual(res.headers.get("tus-resumable"), "1.0.0");
    location = res.headers.get("location")!;
    assert.match(location, /^\/tus\/[0-9a-f]{32}$/);
    const expires = Date.parse(res.headers.get("upload-expires")!);
    assert.match(
      res.headers.get("upload-expires")!,
      /^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$/,
    );
    assert(expires >= Math.floor(before / 1000) * 1000 + 3600_000 - 1000);
    assert(expires <= Date.now() + 3600_000);
    assert.strictEqual(res.body, null);
  });

  await t.step("HEAD: offset 0, length, metadata, no-store", async () => {
    const res = await call("HEAD", location);
    assert.strictEqual(res.status, 200);
    assert.strictEqual(res.headers.get("upload-offset"), "0");
    assert.strictEqual(
      res.headers.get("upload-length"),
      String(content.length),
    );
    assert.strictEqual(res.headers.get("upload-metadata"), metadata);
    assert.strictEqual(res.headers.get("cache-control"), "no-store");
    assert(res.headers.has("upload-expires"));
    assert(!res.headers.has("content-location"));
  });

  await t.step(
    "PATCH pieces of 1, 1023, 1, 2047, 500 and the rest",
    async () => {
      let offset = 0;
      for (const size of [1, PART - 1, 1, 2 * PART - 1, 500]) {
        const piece = content.subarray(offset, offset + size);
        // Half of them say their Content-Length, half are streams.
        const res = await patch(
          location,
          offset,
          size % 2 ? piece : new Blob([piece]).stream(),
          size % 2 ? { "content-length": String(size) } : {},
        );
        assert.strictEqual(res.status, 204, await res.clone().text());
        assert.strictEqual(res.headers.get("tus-resumable"), "1.0.0");
        offset += size;
        assert.strictEqual(res.headers.get("upload-offset"), String(offset));
        assert(res.headers.has("upload-expires"));
        assert(!res.headers.has("content-location"));
        assert.strictEqual(await offsetOf(location), offset);
      }
      // The parts so far: complete up to the last boundary, then the tail.
      const id = location.split("/").pop()!;
      const { parts } = await store.uploadInfo(id);
      assert.deepStrictEqual(
        parts.map((p) => [p!.size, p!.complete]),
        [[PART, true], [PART, true], [PART, true], [offset - 3 * PART, false]],
      );
      const res = await patch(location, offset, content.subarray(offset));
      assert.strictEqual(res.status, 204);
      assert.strictEqual(
        res.headers.get("upload-offset"),
        String(content.length),
      );
      assert.strictEqual(res.headers.get("content-location"), `/blobs/${hash}`);
      assert.strictEqual(
        res.headers.get("upload-metadata"),
        `${metadata},sha384 ${btoa(hash)}`,
      );
    },
  );

  await t.step(
    "the blob is served by hash, exactly, as a multipart blob",
    async () => {
      const res = await call("GET", `/blobs/${hash}`, { tus: false });
      assert.strictEqual(res.status, 200);
      assert.deepStrictEqual(new Uint8Array(await res.arrayBuffer()), content);
      const stat = await new MultipartBlobs(store).stat(hash);
      assert.strictEqual(stat.kind, "multipart");
      assert.deepStrictEqual(stat.index?.sizes, [PART, PART, PART, PART, 904]);
      const range = await call("GET", `/blobs/${hash}`, {
        tus: false,
        headers: { range: "bytes=1000-2100" },
      });
      assert.deepStrictEqual(
        new Uint8Array(await range.arrayBuffer()),
        content.subarray(1000, 2101),
      );
    },
  );

  await t.step(
    "HEAD of the finished upload: the blob, and no expiry (the service keeps it)",
    async () => {
      const res = await call("HEAD", location);
      assert.strictEqual(res.status, 200);
      assert.strictEqual(
        res.headers.get("upload-offset"),
        String(content.length),
      );
      assert.strictEqual(res.headers.get("content-location"), `/blobs/${hash}`);
      assert.match(
        res.headers.get("upload-metadata")!,
        new RegExp(`sha384 ${btoa(hash)}$`),
      );
      assert(!res.headers.has("upload-expires"));
    },
  );

  await t.step(
    "an empty PATCH at the end is a no-op 204; anything else 409",
    async () => {
      for (const body of [null, new Uint8Array(0), new Blob([]).stream()]) {
        const res = await patch(location, content.length, body);
        assert.strictEqual(res.status, 204);
        assert.strictEqual(
          res.headers.get("content-location"),
          `/blobs/${hash}`,
        );
      }
      await expectError(
        await patch(location, content.length, bytesOf(1)),
        409,
        "conflict",
      );
      await expectError(await patch(location, 0, bytesOf(1)), 409, "conflict");
      await expectError(
        await patch(location, 0, null, { "content-length": "0" }),
        409,
        "conflict",
      );
    },
  );

  await t.step(
    "DELETE of the finished upload: 409, the blob stays",
    async () => {
      const message = await expectError(
        await call("DELETE", location),
        409,
        "conflict",
      );
      assert.match(message, /blob stays/);
      assert.strictEqual((await call("HEAD", location)).status, 200);
      assert.strictEqual(
        (await call("GET", `/blobs/${hash}`, { tus: false })).status,
        200,
      );
    },
  );
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: uploads of one part, of a full part, and of nothing", async () => {
  const { store, call, create, patch, errors } = service();
  for (const size of [1, 100, PART - 1, PART, PART + 1, 2 * PART]) {
    const content = bytesOf(size, size);
    const location = await create(size);
    const res = await patch(location, 0, content);
    assert.strictEqual(res.status, 204, `${size}`);
    assert.strictEqual(
      res.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
    const got = await call("GET", `/blobs/${hex(content)}`, { tus: false });
    assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), content);
    const head = await call("HEAD", location);
    assert.strictEqual(
      head.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
    // One part: its blob is a plain blob, and the record lives on until
    // it expires; more: the service keeps the record as long as the blob.
    assert.strictEqual(
      head.headers.has("upload-expires"),
      size <= PART,
      `${size}`,
    );
  }
  const empty = hex(new Uint8Array(0));
  const res = await call("POST", "/tus/", {
    headers: { "upload-length": "0" },
  });
  assert.strictEqual(res.status, 201);
  assert.strictEqual(res.headers.get("content-location"), `/blobs/${empty}`);
  const head = await call("HEAD", res.headers.get("location")!);
  assert.strictEqual(head.headers.get("upload-offset"), "0");
  assert.strictEqual(head.headers.get("upload-length"), "0");
  assert.strictEqual(head.headers.get("content-location"), `/blobs/${empty}`);
  assert.strictEqual((await store.stat(empty)).size, 0);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: creation-with-upload", async () => {
  const { call, offsetOf, patch, errors } = service();
  const content = bytesOf(3 * PART + 5, 3);
  // Part of it with the creation, the rest in a PATCH.
  const res = await call("POST", "/tus/", {
    headers: {
      "upload-length": String(content.length),
      "content-type": OCTET,
      "content-length": String(PART + 10),
    },
    body: content.subarray(0, PART + 10),
  });
  assert.strictEqual(res.status, 201);
  assert.strictEqual(res.headers.get("upload-offset"), String(PART + 10));
  const location = res.headers.get("location")!;
  assert.strictEqual(await offsetOf(location), PART + 10);
  const rest = await patch(location, PART + 10, content.subarray(PART + 10));
  assert.strictEqual(
    rest.headers.get("content-location"),
    `/blobs/${hex(content)}`,
  );
  // All of it with the creation, streamed.
  const whole = await call("POST", "/tus/", {
    headers: { "upload-length": String(content.length), "content-type": OCTET },
    body: new Blob([content]).stream(),
  });
  assert.strictEqual(whole.status, 201);
  assert.strictEqual(
    whole.headers.get("upload-offset"),
    String(content.length),
  );
  assert.strictEqual(
    whole.headers.get("content-location"),
    `/blobs/${hex(content)}`,
  );
  // A body of another type is refused before anything is created.
  await expectError(
    await call("POST", "/tus/", {
      headers: { "upload-length": "3", "content-type": "text/plain" },
      body: "abc",
    }),
    415,
    "unsupported_media_type",
  );
  // More than Upload-Length, declared: refused before anything is created.
  await expectError(
    await call("POST", "/tus/", {
      headers: {
        "upload-length": "3",
        "content-type": OCTET,
        "content-length": "4",
      },
      body: "abcd",
    }),
    400,
    "upload_length_exceeded",
  );
  // ...or streamed: the upload exists, and the error says where.
  const over = await call("POST", "/tus/", {
    headers: { "upload-length": "3", "content-type": OCTET },
    body: new Blob(["abcd"]).stream(),
  });
  await expectError(over.clone(), 400, "upload_length_exceeded");
  assert.strictEqual(await offsetOf(over.headers.get("location")!), 0);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: what creation refuses", async () => {
  const { store, call, errors } = service({ maxBodySize: 10 * PART });
  const post = (headers: Record<string, string>, tus = true) =>
    call("POST", "/tus/", { headers, tus });
  const cases: [Record<string, string>, number, string, boolean?][] = [
    [{ "upload-length": "5" }, 412, "unsupported_version", false],
    [
      { "upload-length": "5", "tus-resumable": "0.2.2" },
      412,
      "unsupported_version",
    ],
    [{}, 400, "bad_request"],
    [{ "upload-length": "-1" }, 400, "bad_request"],
    [{ "upload-length": "1.5" }, 400, "bad_request"],
    [{ "upload-length": "1e3" }, 400, "bad_request"],
    [{ "upload-length": "" }, 400, "bad_request"],
    [{ "upload-length": "99999999999999999999" }, 400, "bad_request"],
    [{ "upload-length": String(10 * PART + 1) }, 413, "too_large"],
    [{ "upload-defer-length": "1" }, 400, "not_supported"],
    [
      { "upload-length": "5", "upload-concat": "partial" },
      400,
      "not_supported",
    ],
    [{ "upload-length": "5", "upload-metadata": "a b c" }, 400, "bad_metadata"],
    [
      { "upload-length": "5", "upload-metadata": "a !!!!" },
      400,
      "bad_metadata",
    ],
    [{ "upload-length": "5", "upload-metadata": "a,a" }, 400, "bad_metadata"],
    [
      { "upload-length": "5", "upload-metadata": `sha384 ${btoa("abc")}` },
      400,
      "bad_metadata",
    ],
    [{ "upload-length": "5", "content-length": "x" }, 400, "bad_request"],
    [
      {
        "upload-length": "0",
        "upload-metadata": `sha384 ${btoa("0".repeat(96))}`,
      },
      422,
      "hash_mismatch",
    ],
  ];
  for (const [headers, status, code, tus] of cases) {
    const res = await post(headers, tus);
    const message = await expectError(res, status, code);
    if (status === 412) {
      assert.strictEqual(res.headers.get("tus-version"), "1.0.0");
    }
    assert(!res.headers.has("location"), message);
  }
  // Nothing was created by any of them.
  const uploads = [];
  for await (const upload of store.catalog.uploads()) uploads.push(upload);
  assert.deepStrictEqual(uploads, []);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: what PATCH refuses", async () => {
  const { store, call, create, patch, offsetOf, errors } = service();
  const location = await create(3 * PART);
  assert.strictEqual((await patch(location, 0, bytesOf(100))).status, 204);
  const cases: [() => Promise<Response>, number, string][] = [
    [() => patch(location, 0, bytesOf(10)), 409, "conflict"],
    [() => patch(location, 101, bytesOf(10)), 409, "conflict"],
    [
      () =>
        patch(location, 100, bytesOf(10), {
          "content-type": "application/octet-stream",
        }),
      415,
      "unsupported_media_type",
    ],
    [
      () =>
        call("PATCH", location, {
          headers: { "upload-offset": "100" },
          body: "x",
        }),
      415,
      "unsupported_media_type",
    ],
    [
      () =>
        call("PATCH", location, {
          headers: { "content-type": OCTET },
          body: "x",
        }),
      400,
      "bad_request",
    ],
    [
      () => patch(location, 100, bytesOf(10), { "upload-offset": "-1" }),
      400,
      "bad_request",
    ],
    [
      () => patch(location, 100, bytesOf(10), { "upload-length": "5" }),
      400,
      "bad_request",
    ],
    [
      () => patch(location, 100, bytesOf(10), { "tus-resumable": "2.0.0" }),
      412,
      "unsupported_version",
    ],
    [
      () =>
        patch(location, 100, bytesOf(3 * PART), {
          "content-length": String(3 * PART),
        }),
      400,
      "upload_length_exceeded",
    ],
    [
      () => patch("/tus/0123456789abcdef0123456789abcdef", 0, bytesOf(1)),
      404,
      "not_found",
    ],
    [() => patch("/tus/..%2f..%2fetc", 0, bytesOf(1)), 404, "not_found"],
    [() => patch(`/tus/${"a".repeat(200)}`, 0, bytesOf(1)), 404, "not_found"],
    [() => call("GET", location), 405, "method_not_allowed"],
    [() => call("PUT", location), 405, "method_not_allowed"],
    [() => call("POST", location), 405, "method_not_allowed"],
  ];
  for (const [send, status, code] of cases) {
    await expectError(await send(), status, code);
  }
  assert.strictEqual(await offsetOf(location), 100);
  // A 409 says where the upload is.
  const wrong = await patch(location, 7, bytesOf(1));
  assert.strictEqual(wrong.headers.get("upload-offset"), "100");
  await wrong.body?.cancel();
  // Streamed beyond Upload-Length: the full parts that fit are kept, the
  // rest is not, and the answer says where it stopped.
  const chunks = [];
  for (let i = 0; i < 6; i++) chunks.push(bytesOf(500, 9 + i));
  const over = await patch(location, 100, ReadableStream.from(chunks));
  const message = await expectError(
    over.clone(),
    400,
    "upload_length_exceeded",
  );
  assert.match(message, /upload is at offset 2048/);
  assert.strictEqual(over.headers.get("upload-offset"), "2048");
  assert.strictEqual(await offsetOf(location), 2048);
  // An upload of the /uploads routes is no tus upload.
  const plain = await (await call("POST", "/uploads", { tus: false })).json();
  await expectError(await call("HEAD", `/tus/${plain.id}`), 404, "not_found");
  await expectError(
    await patch(`/tus/${plain.id}`, 0, bytesOf(1)),
    404,
    "not_found",
  );
  assert.strictEqual((await store.uploadInfo(plain.id)).parts.length, 0);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: Upload-Checksum", async (t) => {
  const { store, call, create, patch, offsetOf, errors } = service();
  const content = bytesOf(5 * PART + 77, 5);
  const location = await create(content.length);
  const digest = (algorithm: string, bytes: Uint8Array) =>
    `${algorithm} ${createHash(algorithm).update(bytes).digest("base64")}`;

  await t.step("sha1 and sha384 that match: stored", async () => {
    const first = content.subarray(0, PART + 3);
    const res = await patch(location, 0, first, {
      "upload-checksum": digest("sha1", first),
    });
    assert.strictEqual(res.status, 204);
    const second = content.subarray(PART + 3, 2 * PART + 50);
    const streamed = await patch(
      location,
      PART + 3,
      new Blob([second]).stream(),
      {
        "upload-checksum": digest("sha384", second),
      },
    );
    assert.strictEqual(streamed.status, 204);
    assert.strictEqual(
      streamed.headers.get("upload-offset"),
      String(2 * PART + 50),
    );
  });

  await t.step("a mismatch: 460, nothing of the PATCH kept", async () => {
    const at = 2 * PART + 50;
    const piece = content.subarray(at, at + 2 * PART);
    const refsBefore = [];
    for await (const ref of store.catalog.refsPutBefore(new Date(8.64e15))) {
      refsBefore.push(ref.hash);
    }
    for (const algorithm of ["sha1", "sha384"]) {
      const res = await patch(location, at, piece, {
        "upload-checksum": digest(algorithm, bytesOf(10)),
      });
      const message = await expectError(res.clone(), 460, "checksum_mismatch");
      assert.match(message, /nothing of them was kept/);
      assert.strictEqual(res.headers.get("upload-offset"), String(at));
    }
    assert.strictEqual(await offsetOf(location), at);
    const refsAfter = [];
    for await (const ref of store.catalog.refsPutBefore(new Date(8.64e15))) {
      refsAfter.push(ref.hash);
    }
    assert.deepStrictEqual(
      refsAfter.sort(),
      refsBefore.sort(),
      "no blob stored",
    );
  });

  await t.step(
    "an unsupported algorithm or a malformed digest: 400, unread",
    async () => {
      const at = await offsetOf(location);
      for (
        const value of [
          "md5 AAAAAAAAAAAAAAAAAAAAAA==",
          "sha256 AAAA",
          "sha1",
          "sha1 AAAA",
        ]
      ) {
        await expectError(
          await patch(location, at, content.subarray(at, at + 10), {
            "upload-checksum": value,
          }),
          400,
          "bad_checksum",
        );
      }
      assert.strictEqual(await offsetOf(location), at);
    },
  );

  await t.step(
    "more than four parts: 413, declared or streamed, nothing kept",
    async () => {
      const big = service();
      const where = await big.create(6 * PART);
      const body = bytesOf(4 * PART + 1);
      const checksum = { "upload-checksum": digest("sha1", body) };
      const declared = await big.patch(where, 0, body, {
        ...checksum,
        "content-length": String(body.length),
      });
      assert.match(
        await expectError(declared, 413, "too_large"),
        /held in memory until it is checked, up to 4 parts/,
      );
      const streamed = await big.patch(
        where,
        0,
        new Blob([body]).stream(),
        checksum,
      );
      await expectError(streamed, 413, "too_large");
      assert.strictEqual(await big.offsetOf(where), 0);
      // Four parts exactly is fine.
      const four = bytesOf(4 * PART);
      const ok = await big.patch(where, 0, four, {
        "upload-checksum": digest("sha384", four),
      });
      assert.strictEqual(ok.status, 204);
      assert.strictEqual(ok.headers.get("upload-offset"), String(4 * PART));
    },
  );

  await t.step("the rest, checked: the whole is right", async () => {
    const at = await offsetOf(location);
    const rest = content.subarray(at);
    const res = await patch(location, at, rest, {
      "upload-checksum": digest("sha1", rest),
    });
    assert.strictEqual(
      res.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
    const got = await call("GET", `/blobs/${hex(content)}`, { tus: false });
    assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), content);
  });
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: a sha384 in Upload-Metadata is checked at the end", async () => {
  const { store, call, create, patch, errors } = service();
  for (const size of [100, 3 * PART + 1]) {
    const content = bytesOf(size, 6);
    const right = await create(size, {
      "upload-metadata": `sha384 ${btoa(hex(content).toUpperCase())}`,
    });
    const ok = await patch(right, 0, content);
    assert.strictEqual(
      ok.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
    // Only one sha384 key in the answer: the service's.
    assert.strictEqual(
      ok.headers.get("upload-metadata"),
      `sha384 ${btoa(hex(content))}`,
    );

    const other = bytesOf(size, 7);
    const wrong = await create(size, {
      "upload-metadata": `name eA==,sha384 ${btoa(hex(content))}`,
    });
    assert.strictEqual(
      (await patch(wrong, 0, other.subarray(0, 50))).status,
      204,
    );
    const res = await patch(wrong, 50, other.subarray(50));
    const message = await expectError(res, 422, "hash_mismatch");
    assert.match(
      message,
      new RegExp(
        `hashes to ${hex(other)}, not to the sha384 of its Upload-Metadata \\(${
          hex(content)
        }\\): terminated`,
      ),
    );
    await expectError(await call("HEAD", wrong), 404, "not_found");
    assert.strictEqual(
      await store.catalog.multipart.get(hex(other)),
      undefined,
    );
    if (size > PART) {
      const got = await call("GET", `/blobs/${hex(other)}`, { tus: false });
      assert.strictEqual(got.status, 404);
      await got.body?.cancel();
    }
  }
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: a body that has every byte and then stalls is answered for the upload: 422 if its sha384 is wrong", async () => {
  // Found by the fuzzer: the upload was refused for its hash and removed,
  // but the answer was the body's 408, so the client saw its upload gone
  // after a timeout.
  const { call, create, patch, errors } = service({ bodyIdleTimeout: 50 });
  for (const size of [100, 2 * PART + 1]) {
    const content = bytesOf(size, 8);
    const wrong = await create(size, {
      "upload-metadata": `sha384 ${btoa(hex(bytesOf(size, 9)))}`,
    });
    const stalls = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(content);
          // ...and never ends.
        },
      });
    const res = await patch(wrong, 0, stalls());
    const message = await expectError(res, 422, "hash_mismatch");
    assert.match(message, /terminated/);
    await expectError(await call("HEAD", wrong), 404, "not_found");
    // With the right sha384, the same stall finishes the upload: the
    // answer is still the body's 408, and HEAD shows it whole.
    const right = await create(size, {
      "upload-metadata": `sha384 ${btoa(hex(content))}`,
    });
    await expectError(await patch(right, 0, stalls()), 408, "request_timeout");
    const head = await call("HEAD", right);
    assert.strictEqual(head.status, 200);
    assert.strictEqual(head.headers.get("upload-offset"), String(size));
    assert.strictEqual(
      head.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
  }
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: termination", async () => {
  const { store, call, create, patch, errors } = service();
  const location = await create(3 * PART);
  assert.strictEqual((await patch(location, 0, bytesOf(PART + 5))).status, 204);
  const res = await call("DELETE", location);
  assert.strictEqual(res.status, 204);
  assert.strictEqual(res.headers.get("tus-resumable"), "1.0.0");
  await expectError(await call("HEAD", location), 404, "not_found");
  await expectError(
    await patch(location, PART + 5, bytesOf(1)),
    404,
    "not_found",
  );
  await expectError(await call("DELETE", location), 404, "not_found");
  await expectError(
    await call("DELETE", location, { tus: false }),
    412,
    "unsupported_version",
  );
  // Its bytes are garbage for the next collection.
  const { removed } = await collect(store, {
    keep: new Refs(),
    before: new Date(),
  });
  assert.strictEqual(removed, 2);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: expiration — 410 once expired, 404 once reaped", async () => {
  const { store, call, create, patch, errors } = service({
    tus: { partSize: PART, expiresInMs: 1000 },
  });
  const location = await create(2 * PART);
  assert.strictEqual((await patch(location, 0, bytesOf(10))).status, 204);
  const finished = await create(5);
  const done = await patch(finished, 0, bytesOf(5));
  assert(done.headers.has("upload-expires"));
  await new Promise((resolve) => setTimeout(resolve, 1100));
  for (const where of [location, finished]) {
    await expectError(await call("HEAD", where), 410, "gone");
    await expectError(await patch(where, 10, bytesOf(1)), 410, "gone");
    await expectError(await call("DELETE", where), 410, "gone");
  }
  // The server's reaper is collect() without keep: expired records go.
  await collect(store, { sweep: false });
  for (const where of [location, finished]) {
    await expectError(await call("HEAD", where), 404, "not_found");
  }
  // The blob of the finished one is a blob like any other.
  assert.strictEqual(
    (await call("GET", `/blobs/${hex(bytesOf(5))}`, { tus: false })).status,
    200,
  );
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: one request at a time per upload — a second PATCH is a 423, unread", async () => {
  const { create, patch, offsetOf, call, errors } = service();
  const location = await create(3 * PART);
  let release!: () => void;
  const held = new Promise<void>((resolve) => release = resolve);
  const slow = new ReadableStream<Uint8Array>({
    async start(controller) {
      controller.enqueue(bytesOf(PART + 1, 1));
      await held;
      controller.close();
    },
  });
  const first = patch(location, 0, slow);
  await new Promise((resolve) => setTimeout(resolve, 50));
  let pulled = false;
  const second = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled = true;
      controller.enqueue(bytesOf(10, 2));
      controller.close();
    },
  }, { highWaterMark: 0 });
  const res = await patch(location, 0, second);
  const message = await expectError(res.clone(), 423, "locked");
  assert.match(message, /being written by another request/);
  assert.strictEqual(res.headers.get("retry-after"), "1");
  assert.strictEqual(pulled, false);
  // HEAD does not wait: it says what is stored, and the part that
  // filled is stored already, before the PATCH ends.
  assert.strictEqual(await offsetOf(location), PART);
  release();
  const done = await first;
  assert.strictEqual(done.status, 204);
  assert.strictEqual(done.headers.get("upload-offset"), String(PART + 1));
  // The loser, retried at its offset: 409, and where to go on from.
  const again = await patch(location, 0, bytesOf(10, 2));
  await expectError(again.clone(), 409, "conflict");
  assert.strictEqual(again.headers.get("upload-offset"), String(PART + 1));
  assert.strictEqual((await call("DELETE", location)).status, 204);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: X-HTTP-Method-Override", async () => {
  const { create, call, offsetOf, errors } = service();
  const location = await create(10);
  const res = await call("POST", location, {
    headers: {
      "x-http-method-override": "PATCH",
      "content-type": OCTET,
      "upload-offset": "0",
    },
    body: bytesOf(4),
  });
  assert.strictEqual(res.status, 204);
  assert.strictEqual(await offsetOf(location), 4);
  const removed = await call("POST", location, {
    headers: { "x-http-method-override": "delete" },
  });
  assert.strictEqual(removed.status, 204);
  await expectError(
    await call("POST", location, {
      headers: { "x-http-method-override": "GET" },
    }),
    405,
    "method_not_allowed",
  );
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: writes need the token; 401s say Tus-Resumable too", async () => {
  const { call, errors } = service({ authorize: bearerToken("s3cret") });
  const auth = { authorization: "Bearer s3cret" };
  const denied = await call("POST", "/tus/", {
    headers: { "upload-length": "5" },
  });
  await expectError(denied, 401, "unauthorized");
  const created = await call("POST", "/tus/", {
    headers: { "upload-length": "5", ...auth },
  });
  assert.strictEqual(created.status, 201);
  const location = created.headers.get("location")!;
  for (const method of ["HEAD", "PATCH", "DELETE"]) {
    const res = await call(method, location, {
      headers: { "content-type": OCTET, "upload-offset": "0" },
    });
    assert.strictEqual(res.status, 401, method);
    assert.strictEqual(res.headers.get("tus-resumable"), "1.0.0");
    await res.body?.cancel();
  }
  const ok = await call("PATCH", location, {
    headers: { ...auth, "content-type": OCTET, "upload-offset": "0" },
    body: "abcde",
  });
  assert.strictEqual(ok.status, 204);
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: recovery from what a crash can leave", async (t) => {
  const { store, call, create, patch, offsetOf, errors } = service();
  const idOf = (location: string) => location.split("/").pop()!;

  await t.step(
    "a full part stored but left incomplete counts, and goes on",
    async () => {
      const content = bytesOf(3 * PART + 9, 11);
      const location = await create(content.length);
      assert.strictEqual(
        (await patch(location, 0, content.subarray(0, 100))).status,
        204,
      );
      // What a PATCH that died between storing part 0 and completing it leaves.
      await store.putPartBytes(
        idOf(location),
        0,
        content.subarray(0, PART),
        0,
        {
          complete: false,
        },
      );
      assert.strictEqual(await offsetOf(location), PART);
      const res = await patch(location, PART, content.subarray(PART));
      assert.strictEqual(
        res.headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
    },
  );

  await t.step(
    "every byte there, never finished: HEAD finishes it",
    async () => {
      const content = bytesOf(2 * PART + 3, 12);
      const location = await create(content.length);
      const id = idOf(location);
      await store.putPartBytes(id, 0, content.subarray(0, PART), 0);
      await store.putPartBytes(id, 1, content.subarray(PART, 2 * PART), PART);
      await store.putPartBytes(id, 2, content.subarray(2 * PART), 2 * PART, {
        complete: false,
      });
      const res = await call("HEAD", location);
      assert.strictEqual(
        res.headers.get("upload-offset"),
        String(content.length),
      );
      assert.strictEqual(
        res.headers.get("content-location"),
        `/blobs/${hex(content)}`,
      );
      const got = await call("GET", `/blobs/${hex(content)}`, { tus: false });
      assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), content);
    },
  );

  await t.step("finished, never published: HEAD publishes it", async () => {
    const content = bytesOf(2 * PART + 3, 13);
    const location = await create(content.length);
    const id = idOf(location);
    const parts = [
      await store.putPartBytes(id, 0, content.subarray(0, PART), 0),
      await store.putPartBytes(id, 1, content.subarray(PART, 2 * PART), PART),
      await store.putPartBytes(id, 2, content.subarray(2 * PART), 2 * PART),
    ];
    await store.finishUpload(id, parts);
    const got404 = await call("GET", `/blobs/${hex(content)}`, { tus: false });
    assert.strictEqual(got404.status, 404);
    await got404.body?.cancel();
    const res = await patch(location, content.length, null);
    assert.strictEqual(res.status, 204);
    assert.strictEqual(
      res.headers.get("content-location"),
      `/blobs/${hex(content)}`,
    );
    const got = await call("GET", `/blobs/${hex(content)}`, { tus: false });
    assert.deepStrictEqual(new Uint8Array(await got.arrayBuffer()), content);
  });

  await t.step("a tail whose blob is gone counts for nothing", async () => {
    const location = await create(3 * PART);
    const id = idOf(location);
    assert.strictEqual(
      (await patch(location, 0, bytesOf(PART + 10))).status,
      204,
    );
    await store.catalog.initPart(id, 1, {
      hash: hex(bytesOf(20, 99)),
      size: 20,
      offset: PART,
      complete: false,
    });
    assert.strictEqual(await offsetOf(location), PART);
    assert.strictEqual(
      (await patch(location, PART, bytesOf(30, 3))).status,
      204,
    );
    assert.strictEqual(await offsetOf(location), PART + 30);
  });

  await t.step("parts changed through /uploads: 409, never a 500", async () => {
    const location = await create(3 * PART);
    const id = idOf(location);
    const odd = bytesOf(PART + 1);
    const put = await call("PUT", `/uploads/${id}/parts/0?hash=${hex(odd)}`, {
      tus: false,
      body: odd,
      headers: { "content-length": String(odd.length) },
    });
    assert.strictEqual(put.status, 200);
    await put.body?.cancel();
    await expectError(await call("HEAD", location), 409, "conflict");
    await expectError(await patch(location, 0, bytesOf(1)), 409, "conflict");
  });
  assert.deepStrictEqual(errors, []);
});

Deno.test("tus: mounting — prefixes, off, metrics labels", async () => {
  const { call, errors } = service({
    prefix: "/store",
    tus: { prefix: "files/v1", partSize: PART },
    metrics: true,
  });
  const res = await call("POST", "/store/files/v1/", {
    headers: { "upload-length": "3" },
  });
  assert.strictEqual(res.status, 201);
  const location = res.headers.get("location")!;
  assert.match(location, /^\/store\/files\/v1\/[0-9a-f]{32}$/);
  const done = await call("PATCH", location, {
    headers: { "content-type": OCTET, "upload-offset": "0" },
    body: "abc",
  });
  assert.strictEqual(
    done.headers.get("content-location"),
    `/store/blobs/${hex(new TextEncoder().encode("abc"))}`,
  );
  const none = await call("OPTIONS", "/store/tus/", { tus: false });
  assert.strictEqual(none.status, 404);
  await none.body?.cancel();
  const text = await (await call("GET", "/store/metrics", { tus: false }))
    .text();
  assert.match(text, /route="\/tus",method="POST",status="201"\} 1/);
  assert.match(text, /route="\/tus\/\{id\}",method="PATCH",status="204"\} 1/);

  const off = service({ tus: false });
  const gone = await off.call("POST", "/tus/", {
    headers: { "upload-length": "3" },
  });
  assert.strictEqual(gone.status, 404);
  await gone.body?.cancel();

  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
  for (
    const prefix of ["/", "", "/blobs/", "uploads", "/a/../b", "/a b/", "/%2e/"]
  ) {
    assert.throws(
      () => createHandler(store, { tus: { prefix } }),
      TypeError,
      prefix,
    );
  }
  for (
    const tus of [{ expiresInMs: 0 }, { partSize: -1 }, { expiresInMs: 1.5 }]
  ) {
    assert.throws(() => createHandler(store, { tus }), TypeError);
  }
  assert.deepStrictEqual(errors, []);
});
