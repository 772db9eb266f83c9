import assert from "node:assert";
import { Drain } from "./drain.ts";

/** A server whose handler reads the whole body and answers its length. */
function serveCounting(drain: Drain) {
  return Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    drain.wrap(async (req) => {
      try {
        const body = await req.arrayBuffer();
        return new Response(`read ${body.byteLength}`);
      } catch {
        return new Response("cut", { status: 400 });
      }
    }),
  );
}

/** Opens a PUT of 10 bytes and sends the first 5. */
async function openPut(port: number) {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  await connection.write(
    new TextEncoder().encode(
      "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345",
    ),
  );
  return connection;
}

async function readResponse(connection: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  const n = await connection.read(buffer);
  return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
}

Deno.test("drain: open uploads finish, new requests are refused, then it resolves", async () => {
  const drain = new Drain();
  const server = serveCounting(drain);
  const connection = await openPut(server.addr.port);
  try {
    // The request is open once the handler runs.
    while (drain.open === 0) await new Promise((r) => setTimeout(r, 5));
    const drained = drain.drain();
    assert(drain.draining);

    const refused = await fetch(`http://127.0.0.1:${server.addr.port}/`);
    assert.strictEqual(refused.status, 503);
    assert.strictEqual(refused.headers.get("retry-after"), "1");
    assert.strictEqual((await refused.json()).error, "stopping");

    await connection.write(new TextEncoder().encode("67890"));
    const answer = await readResponse(connection);
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(answer, /read 10$/);
    assert.strictEqual(await drained, 0);
  } finally {
    connection.close();
    await server.shutdown();
  }
});

Deno.test("drain: resolves after its timeout to the number still open", async () => {
  const drain = new Drain();
  const server = serveCounting(drain);
  const connection = await openPut(server.addr.port);
  try {
    while (drain.open === 0) await new Promise((r) => setTimeout(r, 5));
    assert.strictEqual(await drain.drain(50), 1);
  } finally {
    connection.close();
    await server.shutdown();
  }
});

Deno.test("drain: with nothing open it resolves at once", async () => {
  assert.strictEqual(await new Drain().drain(10_000), 0);
});
