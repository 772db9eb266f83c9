/**
 * `GET /metrics` end to end: a real `Deno.serve` with metrics on, driven
 * by `fetch`, its exposition parsed as a Prometheus scraper would and
 * checked against what the client sent and was answered.
 */

import assert from "node:assert";
import {
  collect,
  MemoryBackend,
  MemoryCatalog,
  Refs,
  sha384,
  Store,
} from "../mod.ts";
import {
  bearerToken,
  createHandler,
  type HandlerOptions,
  Metrics,
} from "../http.ts";
import { bytesOf } from "./helpers.ts";
import { rawRequest } from "./raw_http.ts";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Family {
  type?: string;
  help?: string;
  samples: Sample[];
}

/**
 * Parses the Prometheus text format 0.0.4: `# HELP` and `# TYPE` lines,
 * and samples `name{label="value",…} value` with escaped label values.
 * Samples named `<family>_bucket`, `_sum` and `_count` belong to their
 * histogram. Throws on anything else.
 */
function parseExposition(text: string): Map<string, Family> {
  assert(text.endsWith("\n"), "the exposition ends with a line feed");
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let found = families.get(name);
    if (!found) families.set(name, found = { samples: [] });
    return found;
  };
  for (const line of text.slice(0, -1).split("\n")) {
    if (line === "") continue;
    const meta = line.match(/^# (HELP|TYPE) ([a-zA-Z_:][\w:]*) (.*)$/);
    if (meta) {
      const f = family(meta[2]);
      assert(f.samples.length === 0, `${meta[1]} of ${meta[2]} after samples`);
      if (meta[1] === "HELP") f.help = meta[3];
      else f.type = meta[3];
      continue;
    }
    if (line.startsWith("#")) continue;
    const head = line.match(/^([a-zA-Z_:][\w:]*)/);
    assert(head, `malformed line ${JSON.stringify(line)}`);
    const name = head[1];
    let rest = line.slice(name.length);
    const labels: Record<string, string> = {};
    if (rest.startsWith("{")) {
      rest = rest.slice(1);
      while (!rest.startsWith("}")) {
        const label = rest.match(
          /^([a-zA-Z_]\w*)="((?:[^"\\\n]|\\[\\"n])*)",?/,
        );
        assert(label, `malformed labels in ${JSON.stringify(line)}`);
        labels[label[1]] = label[2].replace(
          /\\([\\"n])/g,
          (_, c) => c === "n" ? "\n" : c,
        );
        rest = rest.slice(label[0].length);
      }
      rest = rest.slice(1);
    }
    const value = rest.match(/^ (\S+)$/)?.[1];
    assert(value !== undefined, `malformed value in ${JSON.stringify(line)}`);
    const number = value === "+Inf"
      ? Infinity
      : value === "-Inf"
      ? -Infinity
      : Number(value);
    assert(!Number.isNaN(number) || value === "NaN", `bad value ${value}`);
    const base = name.replace(/_(bucket|sum|count)$/, "");
    const owner = families.get(base)?.type === "histogram" ? base : name;
    const f = families.get(owner);
    assert(f?.type, `${name} sampled without a TYPE`);
    f.samples.push({ name, labels, value: number });
  }
  return families;
}

/** The samples named `name` in `families`. */
function samplesOf(families: Map<string, Family>, name: string): Sample[] {
  const base = name.replace(/_(bucket|sum|count)$/, "");
  const family = families.get(name) ?? families.get(base);
  return (family?.samples ?? []).filter((s) => s.name === name);
}

/** The upper bound of a histogram bucket: its `le`, `+Inf` included. */
function bound(bucket: Sample): number {
  return bucket.labels.le === "+Inf" ? Infinity : Number(bucket.labels.le);
}

/** The value of the one sample `name` (without labels). */
function valueOf(families: Map<string, Family>, name: string): number {
  const found = samplesOf(families, name);
  assert.strictEqual(found.length, 1, `one sample of ${name}`);
  return found[0].value;
}

function serve(store: Store, options: HandlerOptions) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createHandler(store, options),
  );
  return {
    port: server.addr.port,
    base: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

function memoryStore(): Store {
  return new Store({
    catalog: new MemoryCatalog(),
    backend: new MemoryBackend(),
  });
}

/** The declared `Content-Length` of `res`, its body read. */
async function declared(res: Response): Promise<number> {
  await res.arrayBuffer();
  const length = res.headers.get("content-length");
  assert(length !== null, "a declared Content-Length");
  return Number(length);
}

Deno.test("without metrics, GET /metrics is a 404", async () => {
  const server = serve(memoryStore(), { authorize: false });
  try {
    const res = await fetch(`${server.base}/metrics`);
    assert.strictEqual(res.status, 404);
    assert.strictEqual((await res.json()).error, "not_found");
  } finally {
    await server.close();
  }
});

Deno.test("GET /metrics counts requests by route and status, bytes in and out, durations, uploads in flight and the last GC", async () => {
  const store = memoryStore();
  const metrics = new Metrics();
  const server = serve(store, { authorize: false, metrics });
  try {
    const bytes = bytesOf(1000);
    const hash = await sha384(bytes);
    const blob = `${server.base}/blobs/${hash}`;
    let bytesOut = 0;

    const put = await fetch(blob, { method: "PUT", body: bytes });
    assert.strictEqual(put.status, 201);
    bytesOut += await declared(put);
    const get = await fetch(blob);
    assert.strictEqual(get.status, 200);
    assert.strictEqual(await declared(get), 1000);
    bytesOut += 1000;
    const range = await fetch(blob, { headers: { range: "bytes=100-149" } });
    assert.strictEqual(range.status, 206);
    assert.strictEqual(await declared(range), 50);
    bytesOut += 50;
    const missing = await fetch(`${server.base}/blobs/${"0".repeat(96)}`);
    assert.strictEqual(missing.status, 404);
    bytesOut += await declared(missing);

    const res = await fetch(`${server.base}/metrics`);
    assert.strictEqual(res.status, 200);
    assert.strictEqual(
      res.headers.get("content-type"),
      "text/plain; version=0.0.4; charset=utf-8",
    );
    const text = await res.text();
    const scraped = parseExposition(text);

    // Every family typed, and described.
    for (const [name, family] of scraped) {
      assert(family.type && family.help, `${name} has a TYPE and a HELP`);
    }
    assert.strictEqual(
      scraped.get("blobstore_http_requests_total")?.type,
      "counter",
    );

    // Requests by route pattern, method and status; the scrape itself is
    // counted once answered, so not in its own exposition.
    const requests = samplesOf(scraped, "blobstore_http_requests_total")
      .map(({ labels, value }) =>
        `${labels.method} ${labels.route} ${labels.status} ${value}`
      ).sort();
    assert.deepStrictEqual(requests, [
      "GET /blobs/{hash} 200 1",
      "GET /blobs/{hash} 206 1",
      "GET /blobs/{hash} 404 1",
      "PUT /blobs/{hash} 201 1",
    ]);

    // Bytes: what the client sent, and what the service declared.
    assert.strictEqual(
      valueOf(scraped, "blobstore_http_request_bytes_total"),
      1000,
    );
    assert.strictEqual(
      valueOf(scraped, "blobstore_http_response_bytes_total"),
      bytesOut,
    );

    // The histogram: one observation per request, +Inf equal to the count,
    // buckets cumulative.
    const duration = "blobstore_http_request_duration_seconds";
    assert.strictEqual(scraped.get(duration)?.type, "histogram");
    const counts = samplesOf(scraped, `${duration}_count`);
    assert.strictEqual(counts.reduce((sum, s) => sum + s.value, 0), 4);
    for (const count of counts) {
      const buckets = samplesOf(scraped, `${duration}_bucket`).filter((b) =>
        b.labels.route === count.labels.route &&
        b.labels.method === count.labels.method
      );
      assert.strictEqual(buckets.at(-1)?.labels.le, "+Inf");
      assert.strictEqual(buckets.at(-1)?.value, count.value);
      for (let i = 1; i < buckets.length; i++) {
        assert(bound(buckets[i]) > bound(buckets[i - 1]), "bounds ascend");
        assert(buckets[i].value >= buckets[i - 1].value, "cumulative");
      }
      const sum = samplesOf(scraped, `${duration}_sum`).find((s) =>
        s.labels.route === count.labels.route &&
        s.labels.method === count.labels.method
      );
      assert(sum && sum.value >= 0 && sum.value < 60);
    }
    assert.deepStrictEqual(
      counts.map((c) => `${c.labels.method} ${c.labels.route} ${c.value}`)
        .sort(),
      ["GET /blobs/{hash} 3", "PUT /blobs/{hash} 1"],
    );

    assert.strictEqual(valueOf(scraped, "blobstore_uploads_in_flight"), 0);
    // No GC recorded yet: no GC gauge.
    assert(
      ![...scraped.keys()].some((name) => name.startsWith("blobstore_gc")),
    );

    // The next scrape counts the first, and its bytes.
    const again = parseExposition(
      await (await fetch(`${server.base}/metrics`)).text(),
    );
    assert.deepStrictEqual(
      samplesOf(again, "blobstore_http_requests_total").find((s) =>
        s.labels.route === "/metrics"
      ),
      {
        name: "blobstore_http_requests_total",
        labels: { route: "/metrics", method: "GET", status: "200" },
        value: 1,
      },
    );
    assert.strictEqual(
      valueOf(again, "blobstore_http_response_bytes_total"),
      bytesOut + new TextEncoder().encode(text).byteLength,
    );

    // A GC: one blob kept, one removed.
    const other = bytesOf(300, 7);
    await store.put(other, await sha384(other), other.length);
    const keep = new Refs();
    keep.add(hash);
    const result = await collect(store, { keep, before: new Date() });
    assert.strictEqual(result.removed, 1);
    const before = Date.now() / 1000;
    metrics.recordGc(result);
    const gc = parseExposition(
      await (await fetch(`${server.base}/metrics`)).text(),
    );
    for (
      const [name, value] of [
        ["blobstore_gc_last_kept_blobs", result.kept!.count],
        ["blobstore_gc_last_kept_max_bytes", result.kept!.maxSize],
        ["blobstore_gc_last_kept_mean_bytes", result.kept!.meanSize],
        ["blobstore_gc_last_removed_blobs", result.removed],
      ] as const
    ) {
      assert.strictEqual(gc.get(name)?.type, "gauge");
      assert.strictEqual(valueOf(gc, name), value, name);
    }
    assert.deepStrictEqual(result.kept, {
      count: 1,
      maxSize: 1000,
      meanSize: 1000,
    });
    const at = valueOf(gc, "blobstore_gc_last_timestamp_seconds");
    assert(at >= before - 1 && at <= Date.now() / 1000 + 1);
  } finally {
    await server.close();
  }
});

Deno.test("an upload in progress is in flight until its body is read", async () => {
  const store = memoryStore();
  const server = serve(store, { authorize: false, metrics: true });
  const inFlight = async () =>
    valueOf(
      parseExposition(await (await fetch(`${server.base}/metrics`)).text()),
      "blobstore_uploads_in_flight",
    );
  try {
    const bytes = bytesOf(64 * 1024);
    const hash = await sha384(bytes);
    let resume!: () => void;
    const paused = new Promise<void>((resolve) => resume = resolve);
    const upload = rawRequest(server.port, {
      method: "PUT",
      path: `/blobs/${hash}`,
      headers: { "content-length": String(bytes.length) },
      body: (async function* () {
        yield bytes.subarray(0, 1000);
        await paused;
        yield bytes.subarray(1000);
      })(),
    });
    let seen = await inFlight();
    for (let i = 0; seen !== 1 && i < 100; i++) {
      await new Promise((r) => setTimeout(r, 20));
      seen = await inFlight();
    }
    assert.strictEqual(seen, 1);
    resume();
    assert.strictEqual((await upload)?.status, 201);
    assert.strictEqual(await inFlight(), 0);
  } finally {
    await server.close();
  }
});

Deno.test("GET /metrics is a read: authorized only with authorizeReads; HEAD answers too", async () => {
  const store = memoryStore();
  const open = serve(store, {
    authorize: bearerToken("s3cret"),
    metrics: true,
  });
  const closed = serve(store, {
    authorize: bearerToken("s3cret"),
    authorizeReads: true,
    metrics: true,
  });
  try {
    const res = await fetch(`${open.base}/metrics`);
    assert.strictEqual(res.status, 200);
    await res.body?.cancel();
    const head = await fetch(`${open.base}/metrics`, { method: "HEAD" });
    assert.strictEqual(head.status, 200);
    assert(head.headers.get("content-type")?.startsWith("text/plain"));
    assert.strictEqual(await head.text(), "");

    const refused = await fetch(`${closed.base}/metrics`);
    assert.strictEqual(refused.status, 401);
    await refused.body?.cancel();
    const allowed = await fetch(`${closed.base}/metrics`, {
      headers: { authorization: "Bearer s3cret" },
    });
    assert.strictEqual(allowed.status, 200);
    const scraped = parseExposition(await allowed.text());
    // The 401 is counted with its status.
    assert.deepStrictEqual(
      samplesOf(scraped, "blobstore_http_requests_total").map((s) => s.labels),
      [{ route: "/metrics", method: "GET", status: "401" }],
    );
  } finally {
    await open.close();
    await closed.close();
  }
});

Deno.test("unknown paths count as route other, and a prefix is not part of the route", async () => {
  const metrics = new Metrics();
  const handler = createHandler(memoryStore(), {
    authorize: false,
    prefix: "/store",
    metrics,
  });
  for (
    const path of [
      "/elsewhere",
      "/store/nothing/here",
      "/store/uploads/abc/parts/1",
      "/store/",
    ]
  ) {
    await (await handler(new Request(`http://127.0.0.1${path}`))).body
      ?.cancel();
  }
  const routes = samplesOf(
    parseExposition(metrics.exposition()),
    "blobstore_http_requests_total",
  ).map((s) => `${s.labels.route} ${s.labels.status} ${s.value}`).sort();
  assert.deepStrictEqual(routes, [
    "/ 200 1",
    "/uploads/{id}/parts/{n} 405 1",
    "other 404 2",
  ]);
});

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** `serve --memory --port 0` with `args` and `env`, in its own process. */
function serveCommand(args: string[], env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, "serve", "--memory", ...args],
    env: {
      MONGODB_URL: "",
      SWIFT_AUTH_URL: "",
      BLOBSTORE_TOKEN: "",
      BLOBSTORE_DATA: "",
      BLOBSTORE_CORS_ORIGINS: "",
      BLOBSTORE_REDIRECT: "",
      BLOBSTORE_METRICS: "",
      NO_COLOR: "1",
      PORT: "0",
      ...env,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
}

/** The stderr of `child` up to a line matching `pattern`, read as it comes. */
async function stderrUntil(
  child: Deno.ChildProcess,
  pattern: RegExp,
): Promise<string> {
  const reader = child.stderr.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    while (!pattern.test(text)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stderr ended before ${pattern}: ${text}`);
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

Deno.test("serve --metrics and BLOBSTORE_METRICS=1 serve /metrics; without them it is a 404", async () => {
  for (
    const [args, env, on] of [
      [["--metrics"], {}, true],
      [[], { BLOBSTORE_METRICS: "1" }, true],
      [[], {}, false],
    ] as const
  ) {
    const child = serveCommand([...args], env).spawn();
    try {
      // The metrics line comes after the data line, perhaps in a later read.
      const text = await stderrUntil(
        child,
        on ? /metrics at .*\n/ : /data in memory.*\n/,
      );
      const base = text.match(/listening on (http:\/\/[^/]+)\//)![1];
      assert.strictEqual(text.includes(`metrics at ${base}/metrics`), on);
      const res = await fetch(`${base}/metrics`);
      assert.strictEqual(res.status, on ? 200 : 404, JSON.stringify(args));
      if (on) {
        const scraped = parseExposition(await res.text());
        assert.strictEqual(valueOf(scraped, "blobstore_uploads_in_flight"), 0);
      } else {
        await res.body?.cancel();
      }
    } finally {
      child.kill("SIGTERM");
      assert.strictEqual((await child.status).code, 0);
      await child.stderr.cancel();
    }
  }
});

Deno.test("serve refuses to start with a malformed BLOBSTORE_METRICS", async () => {
  const { code, stderr } = await serveCommand([], { BLOBSTORE_METRICS: "yes" })
    .output();
  assert.notStrictEqual(code, 0);
  assert.match(new TextDecoder().decode(stderr), /invalid BLOBSTORE_METRICS/);
});
