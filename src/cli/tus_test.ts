import assert from "node:assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { tusUpload } from "./tus.ts";

const MiB = 1024 * 1024;

/**
 * A tus server in a `fetch` of its own, for one upload: its first `PATCH`
 * is refused with a 423 once the first chunk of the body has arrived (as
 * a server does while another request still writes the upload), and the
 * rest of that body is read on in the background, as the network would
 * carry it, counting what the client still sends after the answer.
 */
function lockingServer(bytes: Uint8Array) {
  const hash = createHash("sha384").update(bytes).digest("hex");
  let offset = 0;
  let patches = 0;
  const afterRefusal = {
    bytes: 0,
    done: undefined as Promise<void> | undefined,
  };
  const tus = { "tus-resumable": "1.0.0" };
  const fake: typeof fetch = async (input, init) => {
    const method = init?.method ?? "GET";
    if (method === "POST") {
      return new Response(null, {
        status: 201,
        headers: { ...tus, location: "http://tus.test/files/1" },
      });
    }
    if (method === "HEAD") {
      return new Response(null, {
        status: 200,
        headers: {
          ...tus,
          "upload-offset": String(offset),
          "upload-length": String(bytes.length),
        },
      });
    }
    assert.strictEqual(method, "PATCH", `${method} ${input}`);
    const reader = (init!.body as ReadableStream<Uint8Array>).getReader();
    if (++patches === 1) {
      await reader.read();
      afterRefusal.done = (async () => {
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) return;
            afterRefusal.bytes += value.byteLength;
          }
        } catch {
          // the client stopped sending
        }
      })();
      return new Response("locked", { status: 423, headers: tus });
    }
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      offset += value.byteLength;
    }
    return new Response(null, {
      status: 204,
      headers: {
        ...tus,
        "upload-offset": String(offset),
        "upload-metadata": `sha384 ${btoa(hash)}`,
      },
    });
  };
  return { fake, hash, afterRefusal, patches: () => patches };
}

Deno.test("tusUpload: once the server has answered a PATCH, the rest of its body is not sent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const content = new Uint8Array(16 * MiB);
    for (let at = 0; at < content.length; at += 65536) {
      content.set(crypto.getRandomValues(new Uint8Array(65536)), at);
    }
    const path = join(dir, "file.bin");
    await Deno.writeFile(path, content);
    const server = lockingServer(content);
    const retries: string[] = [];
    const result = await tusUpload({
      endpoint: "http://tus.test/files/",
      file: { path, size: content.length },
      metadata: {},
      fetch: server.fake,
      retryDelaysMs: [1],
      onRetry: (err) => retries.push(err.message),
    });
    assert.strictEqual(result.hash, server.hash);
    assert.strictEqual(server.patches(), 2);
    assert.match(retries[0], /HTTP 423/);
    await server.afterRefusal.done;
    // Without the stop, fetch would stream all 16 MiB after the 423; what
    // was already queued when the answer came may still go.
    assert.ok(
      server.afterRefusal.bytes < 2 * MiB,
      `${server.afterRefusal.bytes} bytes sent after the 423`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
