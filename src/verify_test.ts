import { rejects, strictEqual } from "node:assert";
import { HashMismatchError, SizeMismatchError } from "./errors.ts";
import { VerifyStream } from "./verify.ts";

const ABC =
  "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7";

function verify(chunks: string[], size: number, hash: string) {
  const enc = new TextEncoder();
  const source = ReadableStream.from(chunks.map((c) => enc.encode(c)));
  return new Response(source.pipeThrough(new VerifyStream(size, hash))).text();
}

Deno.test("VerifyStream: passes matching content through", async () => {
  strictEqual(await verify(["a", "bc"], 3, ABC), "abc");
});

Deno.test("VerifyStream: short, long and wrong content error the stream", async () => {
  await rejects(
    verify(["ab"], 3, ABC),
    (e) => e instanceof SizeMismatchError && e.actual === 2,
  );
  await rejects(
    verify(["abc", "d"], 3, ABC),
    (e) => e instanceof SizeMismatchError && e.actual === 4,
  );
  await rejects(
    verify(["abd"], 3, ABC),
    (e) => e instanceof HashMismatchError && e.expected === ABC,
  );
});

Deno.test("VerifyStream: excess bytes are refused before they pass", async () => {
  const passed: number[] = [];
  const source = ReadableStream.from([new Uint8Array(2), new Uint8Array(2)]);
  await rejects(
    source.pipeThrough(new VerifyStream(3, ABC)).pipeTo(
      new WritableStream({ write: (c) => void passed.push(c.length) }),
    ),
    SizeMismatchError,
  );
  strictEqual(passed.reduce((a, b) => a + b, 0), 2);
});
