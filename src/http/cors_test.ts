import assert from "node:assert";
import { sha384 } from "../digest.ts";
import { MemoryBackend } from "../memory/backend.ts";
import { MemoryCatalog } from "../memory/catalog.ts";
import { Store } from "../store.ts";
import { bearerToken } from "./auth.ts";
import {
  allowedOrigin,
  CORS_ALLOW_HEADERS,
  CORS_EXPOSE_HEADERS,
  corsPolicy,
  isPreflight,
  normalizeOrigin,
  parseOrigins,
  preflightResponse,
  resolveCors,
  withCors,
  withCorsHeaders,
} from "./cors.ts";
import { createHandler, type HandlerOptions } from "./handler.ts";

const A = "https://a.example";
const B = "http://127.0.0.1:5173";
const STRANGER = "https://evil.example";

Deno.test("cors: origins are normalized as browsers send them, and anything else is refused", () => {
  assert.strictEqual(normalizeOrigin("https://a.example"), A);
  assert.strictEqual(normalizeOrigin("HTTPS://A.EXAMPLE:443/"), A);
  assert.strictEqual(
    normalizeOrigin("http://a.example:80"),
    "http://a.example",
  );
  assert.strictEqual(normalizeOrigin(B), B);
  assert.strictEqual(normalizeOrigin("http://[::1]:8080"), "http://[::1]:8080");
  for (
    const bad of [
      "a.example",
      "https://a.example/app",
      "https://a.example?x",
      "https://a.example#x",
      "https://user@a.example",
      "null",
      "file:///tmp/page.html",
      "*",
      "",
    ]
  ) {
    assert.throws(() => normalizeOrigin(bad), TypeError, bad);
  }
});

Deno.test("cors: parseOrigins takes a comma-separated list, or * alone", () => {
  assert.deepStrictEqual(parseOrigins(`${A},${B}`), [A, B]);
  assert.deepStrictEqual(parseOrigins(` ${A} , , ${A}/ ,`), [A]);
  assert.deepStrictEqual(parseOrigins(" , "), []);
  assert.strictEqual(parseOrigins("*"), "*");
  assert.throws(() => parseOrigins(`*,${A}`), /cannot be listed beside/);
  assert.throws(
    () => parseOrigins(`${A},a.example`),
    /invalid origin "a\.example"/,
  );
});

Deno.test("cors: corsPolicy checks its options and fills in the defaults", () => {
  const policy = corsPolicy({ origins: [A, "HTTP://127.0.0.1:5173"] });
  assert.deepStrictEqual(policy, {
    origins: new Set([A, B]),
    credentials: false,
    maxAge: 600,
  });
  assert.strictEqual(corsPolicy({ origins: ["*"] }).origins, "*");
  assert.strictEqual(corsPolicy({ origins: "*", maxAge: 0 }).maxAge, 0);
  assert.throws(() => corsPolicy({ origins: [A, "*"] }), TypeError);
  assert.throws(() => corsPolicy({ origins: ["a.example"] }), TypeError);
  for (const maxAge of [-1, 1.5, NaN, Infinity]) {
    assert.throws(() => corsPolicy({ origins: "*", maxAge }), /maxAge/);
  }
});

Deno.test("cors: the allowed origin is echoed; * only for every origin without credentials", () => {
  const listed = corsPolicy({ origins: [A] });
  assert.strictEqual(allowedOrigin(listed, A), A);
  assert.strictEqual(allowedOrigin(listed, STRANGER), undefined);
  assert.strictEqual(allowedOrigin(listed, null), undefined);
  assert.strictEqual(allowedOrigin(listed, "null"), undefined);
  // Exact match: browsers send the serialized origin, nothing else passes.
  assert.strictEqual(allowedOrigin(listed, `${A}/`), undefined);
  assert.strictEqual(allowedOrigin(listed, "https://A.example"), undefined);
  assert.strictEqual(allowedOrigin(listed, `${A}.evil.example`), undefined);
  const any = corsPolicy({ origins: "*" });
  assert.strictEqual(allowedOrigin(any, STRANGER), "*");
  assert.strictEqual(allowedOrigin(any, null), undefined);
  const anyWithCredentials = corsPolicy({ origins: "*", credentials: true });
  assert.strictEqual(allowedOrigin(anyWithCredentials, STRANGER), STRANGER);
});

Deno.test("cors: isPreflight needs OPTIONS, Origin and Access-Control-Request-Method", () => {
  const req = (method: string, headers: Record<string, string>) =>
    new Request("http://x/blobs/h", { method, headers });
  const both = { origin: A, "access-control-request-method": "PUT" };
  assert(isPreflight(req("OPTIONS", both)));
  assert(!isPreflight(req("GET", both)));
  assert(!isPreflight(req("OPTIONS", { origin: A })));
  assert(
    !isPreflight(req("OPTIONS", { "access-control-request-method": "PUT" })),
  );
});

Deno.test("cors: a preflight from an allowed origin gets 204 with every header a browser checks", () => {
  const res = preflightResponse(
    corsPolicy({ origins: [A], credentials: true, maxAge: 7200 }),
    A,
  );
  assert.strictEqual(res.status, 204);
  assert.strictEqual(res.body, null);
  assert.deepStrictEqual(Object.fromEntries(res.headers), {
    "access-control-allow-origin": A,
    "access-control-allow-methods": "GET, HEAD, PUT, POST, DELETE, PATCH",
    "access-control-allow-headers":
      "Authorization, Content-Type, Range, If-None-Match, If-Match, If-Range, Repr-Digest, Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, Upload-Checksum, Upload-Defer-Length, Upload-Concat, X-HTTP-Method-Override, X-Requested-With",
    "access-control-max-age": "7200",
    "access-control-allow-credentials": "true",
    "vary": "Origin",
  });
  // Named one by one: `*` does not cover Authorization (Firefox).
  assert(!CORS_ALLOW_HEADERS.includes("*"));
  const any = preflightResponse(corsPolicy({ origins: "*" }), STRANGER);
  assert.strictEqual(any.headers.get("access-control-allow-origin"), "*");
  assert.strictEqual(any.headers.get("access-control-max-age"), "600");
  assert(!any.headers.has("access-control-allow-credentials"));
});

Deno.test("cors: a preflight from any other origin is a 403 without CORS headers", async () => {
  const res = preflightResponse(corsPolicy({ origins: [A] }), STRANGER);
  assert.strictEqual(res.status, 403);
  assert.strictEqual(res.headers.get("vary"), "Origin");
  assert.deepStrictEqual(corsHeaderNames(res), []);
  const body = await res.json();
  assert.strictEqual(body.error, "origin_not_allowed");
  assert.match(body.message, /evil\.example/);
});

Deno.test("cors: withCorsHeaders exposes the headers to an allowed origin only, and always varies on Origin", () => {
  const policy = corsPolicy({ origins: [A], credentials: true });
  const res = withCorsHeaders(
    policy,
    A,
    new Response(null, { status: 304, headers: { etag: '"x"' } }),
  );
  assert.strictEqual(res.status, 304);
  assert.strictEqual(res.headers.get("access-control-allow-origin"), A);
  assert.strictEqual(
    res.headers.get("access-control-allow-credentials"),
    "true",
  );
  assert.strictEqual(
    res.headers.get("access-control-expose-headers"),
    "ETag, Content-Range, Content-Length, Repr-Digest, Location, Accept-Ranges, Retry-After, Content-Location, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, Upload-Length, Upload-Metadata, Upload-Expires",
  );
  assert.strictEqual(res.headers.get("vary"), "Origin");

  for (const origin of [STRANGER, null]) {
    const other = withCorsHeaders(policy, origin, new Response("x"));
    assert.deepStrictEqual(corsHeaderNames(other), []);
    assert.strictEqual(other.headers.get("vary"), "Origin");
  }

  const varied = withCorsHeaders(
    policy,
    A,
    new Response("x", { headers: { vary: "Accept-Encoding" } }),
  );
  assert.strictEqual(varied.headers.get("vary"), "Accept-Encoding, Origin");
  const already = new Response("x", { headers: { vary: "origin" } });
  assert.strictEqual(
    withCorsHeaders(policy, A, already).headers.get("vary"),
    "origin",
  );
});

Deno.test("cors: withCorsHeaders copies a response whose headers are immutable", async () => {
  const policy = corsPolicy({ origins: [A] });
  const redirect = Response.redirect("http://x/elsewhere", 307);
  const res = withCorsHeaders(policy, A, redirect);
  assert.notStrictEqual(res, redirect);
  assert.strictEqual(res.status, 307);
  assert.strictEqual(res.headers.get("location"), "http://x/elsewhere");
  assert.strictEqual(res.headers.get("access-control-allow-origin"), A);
  await res.body?.cancel();
});

Deno.test("cors: withCors answers preflights itself and passes everything else through", async () => {
  const seen: string[] = [];
  const handler = withCors(
    corsPolicy({ origins: [A] }),
    (req: Request, info?: string) => {
      seen.push(`${req.method} ${info}`);
      return Promise.resolve(new Response("hi", { status: 418 }));
    },
  );
  const preflight = await handler(
    new Request("http://x/", {
      method: "OPTIONS",
      headers: { origin: A, "access-control-request-method": "PUT" },
    }),
    "info",
  );
  assert.strictEqual(preflight.status, 204);
  const res = await handler(
    new Request("http://x/", { headers: { origin: A } }),
    "info",
  );
  assert.strictEqual(res.status, 418);
  assert.strictEqual(await res.text(), "hi");
  assert.strictEqual(res.headers.get("access-control-allow-origin"), A);
  assert.deepStrictEqual(seen, ["GET info"]);
  const plain = (_req: Request) => Promise.resolve(new Response());
  assert.strictEqual(withCors(undefined, plain), plain);
});

Deno.test("cors: resolveCors takes the option, or the environment's, or none for false", () => {
  assert.strictEqual(resolveCors(false), undefined);
  assert.deepStrictEqual(resolveCors({ origins: [A], maxAge: 5 }), {
    origins: new Set([A]),
    credentials: false,
    maxAge: 5,
  });
});

// ---- BLOBSTORE_CORS_ORIGINS, read in a child process with its own environment ----

const CORS_MODULE = new URL("./cors.ts", import.meta.url).href;

/** What `corsFromEnv()` returns (or throws) in a Deno with `env` and `permissions`. */
async function corsFromEnvIn(
  env: Record<string, string>,
  permissions: string[],
): Promise<string> {
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      script,
      `import { corsFromEnv } from ${JSON.stringify(CORS_MODULE)};
      try {
        console.log(JSON.stringify(corsFromEnv() ?? null));
      } catch (err) {
        console.log(String(err));
      }`,
    );
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-lock", ...permissions, script],
      env,
      clearEnv: true,
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(stdout).trim();
    assert.strictEqual(code, 0, new TextDecoder().decode(stderr));
    return text;
  } finally {
    await Deno.remove(script);
  }
}

Deno.test("cors: corsFromEnv reads BLOBSTORE_CORS_ORIGINS, and stays off when it may not", async () => {
  const read = ["--allow-read", "--allow-env"];
  // Only what Deno itself needs, besides the variable under test.
  const inherited = Object.fromEntries(
    ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"].flatMap((name) => {
      const value = Deno.env.get(name);
      return value === undefined ? [] : [[name, value]];
    }),
  );
  const env = (value: string) => ({
    ...inherited,
    BLOBSTORE_CORS_ORIGINS: value,
    DENO_NO_UPDATE_CHECK: "1",
  });
  assert.strictEqual(
    await corsFromEnvIn(env(`${A}, ${B}`), read),
    JSON.stringify({ origins: [A, B] }),
  );
  assert.strictEqual(
    await corsFromEnvIn(env("*"), read),
    JSON.stringify({ origins: "*" }),
  );
  assert.strictEqual(await corsFromEnvIn(env(" "), read), "null");
  assert.match(
    await corsFromEnvIn(env("a.example"), read),
    /^TypeError: BLOBSTORE_CORS_ORIGINS: invalid origin "a\.example"/,
  );
  // Without the permission to read it: off, and no prompt (--no-prompt
  // would turn a prompt into an error).
  assert.strictEqual(
    await corsFromEnvIn(env(A), ["--allow-read", "--allow-env=HOME"]),
    "null",
  );
});

// ---- through createHandler ----

const TOKEN = "s3cret";
const HELLO = new TextEncoder().encode("hello, cross-origin world");

async function corsService(options: HandlerOptions = {}) {
  const store = new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
  const handler = createHandler(store, {
    authorize: bearerToken(TOKEN),
    cors: { origins: [A] },
    ...options,
  });
  const hash = await sha384(HELLO);
  const put = await handler(
    new Request(`http://x/blobs/${hash}`, {
      method: "PUT",
      body: HELLO,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        "content-length": String(HELLO.length),
      },
    }),
  );
  assert.strictEqual(put.status, 201);
  await put.body?.cancel();
  return { handler, hash };
}

function corsHeaderNames(res: Response): string[] {
  return [...res.headers.keys()].filter((name) =>
    name.startsWith("access-control-")
  );
}

function assertExposed(res: Response, origin = A): void {
  assert.strictEqual(res.headers.get("access-control-allow-origin"), origin);
  assert.strictEqual(
    res.headers.get("access-control-expose-headers"),
    CORS_EXPOSE_HEADERS.join(", "),
  );
  assert.match(res.headers.get("vary") ?? "", /\bOrigin\b/);
}

Deno.test("cors: createHandler answers preflights before routing and authorization", async () => {
  const { handler, hash } = await corsService();
  for (
    const path of [
      `/blobs/${hash}`,
      "/uploads",
      "/uploads/u1/parts/0",
      "/nowhere",
    ]
  ) {
    const res = await handler(
      new Request(`http://x${path}`, {
        method: "OPTIONS",
        headers: {
          origin: A,
          "access-control-request-method": "PUT",
          "access-control-request-headers": "authorization,content-type",
        },
      }),
    );
    assert.strictEqual(res.status, 204, path);
    assert.strictEqual(res.headers.get("access-control-allow-origin"), A);
    assert.match(
      res.headers.get("access-control-allow-headers")!,
      /\bAuthorization\b.*\bContent-Type\b/,
    );
  }
  const denied = await handler(
    new Request(`http://x/blobs/${hash}`, {
      method: "OPTIONS",
      headers: { origin: STRANGER, "access-control-request-method": "PUT" },
    }),
  );
  assert.strictEqual(denied.status, 403);
  assert.deepStrictEqual(corsHeaderNames(denied), []);
  await denied.body?.cancel();
  // An OPTIONS that is no preflight is routed as before: 405.
  const options = await handler(
    new Request(`http://x/blobs/${hash}`, {
      method: "OPTIONS",
      headers: { origin: A },
    }),
  );
  assert.strictEqual(options.status, 405);
  assertExposed(options);
  await options.body?.cancel();
});

Deno.test("cors: createHandler's answers to an allowed origin carry CORS headers: 200, 206, 304 and errors", async () => {
  const { handler, hash } = await corsService();
  const get = (headers: Record<string, string>, path = `/blobs/${hash}`) =>
    handler(
      new Request(`http://x${path}`, { headers: { origin: A, ...headers } }),
    );

  const whole = await get({});
  assert.strictEqual(whole.status, 200);
  assertExposed(whole);
  assert.deepStrictEqual(new Uint8Array(await whole.arrayBuffer()), HELLO);

  const range = await get({ range: "bytes=0-4", "if-range": `"${hash}"` });
  assert.strictEqual(range.status, 206);
  assertExposed(range);
  assert.strictEqual(
    range.headers.get("content-range"),
    `bytes 0-4/${HELLO.length}`,
  );
  assert.strictEqual(await range.text(), "hello");

  const notModified = await get({ "if-none-match": `"${hash}"` });
  assert.strictEqual(notModified.status, 304);
  assertExposed(notModified);

  const head = await handler(
    new Request(`http://x/blobs/${hash}`, {
      method: "HEAD",
      headers: { origin: A },
    }),
  );
  assert.strictEqual(head.status, 200);
  assertExposed(head);

  const missing = await get({}, `/blobs/${"0".repeat(96)}`);
  assert.strictEqual(missing.status, 404);
  assertExposed(missing);
  assert.strictEqual((await missing.json()).error, "not_found");

  const unauthorized = await handler(
    new Request("http://x/uploads", { method: "POST", headers: { origin: A } }),
  );
  assert.strictEqual(unauthorized.status, 401);
  assertExposed(unauthorized);
  await unauthorized.body?.cancel();

  const created = await handler(
    new Request("http://x/uploads", {
      method: "POST",
      headers: { origin: A, authorization: `Bearer ${TOKEN}` },
    }),
  );
  assert.strictEqual(created.status, 201);
  assertExposed(created);
  assert.match(created.headers.get("location")!, /^\/uploads\//);
  await created.body?.cancel();
});

Deno.test("cors: createHandler's answers to other origins, or to no origin, carry Vary and nothing else", async () => {
  const { handler, hash } = await corsService();
  for (const headers of [{ origin: STRANGER }, {}] as HeadersInit[]) {
    const res = await handler(
      new Request(`http://x/blobs/${hash}`, { headers }),
    );
    assert.strictEqual(res.status, 200);
    assert.deepStrictEqual(corsHeaderNames(res), []);
    assert.strictEqual(res.headers.get("vary"), "Origin");
    await res.body?.cancel();
  }
});

Deno.test("cors: createHandler with cors false, or none, adds no CORS headers", async () => {
  for (const cors of [false, undefined] as const) {
    // A `cors` left undefined reads BLOBSTORE_CORS_ORIGINS: only assert
    // on it where that is unset.
    if (cors === undefined && Deno.env.get("BLOBSTORE_CORS_ORIGINS")) continue;
    const { handler, hash } = await corsService({ cors });
    const res = await handler(
      new Request(`http://x/blobs/${hash}`, { headers: { origin: A } }),
    );
    assert.deepStrictEqual(corsHeaderNames(res), []);
    assert.strictEqual(res.headers.get("vary"), null);
    await res.body?.cancel();
    const preflight = await handler(
      new Request(`http://x/blobs/${hash}`, {
        method: "OPTIONS",
        headers: { origin: A, "access-control-request-method": "PUT" },
      }),
    );
    assert.strictEqual(preflight.status, 405);
    await preflight.body?.cancel();
  }
});

Deno.test("cors: every origin, with credentials, through createHandler", async () => {
  const { handler, hash } = await corsService({
    cors: { origins: "*", credentials: true },
  });
  const res = await handler(
    new Request(`http://x/blobs/${hash}`, { headers: { origin: STRANGER } }),
  );
  assertExposed(res, STRANGER);
  assert.strictEqual(
    res.headers.get("access-control-allow-credentials"),
    "true",
  );
  await res.body?.cancel();
});
