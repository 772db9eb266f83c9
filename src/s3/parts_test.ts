import { deepStrictEqual, rejects, strictEqual } from "node:assert";
import { SizeMismatchError } from "../errors.ts";
import { PartReader, partSizes } from "./parts.ts";

function chunks(...texts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(texts.map((t) => encoder.encode(t)));
}

Deno.test("partSizes: full parts then the rest, at most one empty part", () => {
  deepStrictEqual(partSizes(5, 5), [5]);
  deepStrictEqual(partSizes(6, 5), [5, 1]);
  deepStrictEqual(partSizes(15, 5), [5, 5, 5]);
});

Deno.test("PartReader: parts cut across chunk boundaries, in order", async () => {
  const parts = new PartReader(chunks("abc", "", "defgh", "ij"));
  strictEqual(await new Response(parts.next(4)).text(), "abcd");
  strictEqual(await new Response(parts.next(4)).text(), "efgh");
  strictEqual(await new Response(parts.next(2, { last: true })).text(), "ij");
});

Deno.test("PartReader: a source shorter or longer than the parts is a SizeMismatchError", async () => {
  const short = new PartReader(chunks("abc"));
  await rejects(new Response(short.next(5)).text(), SizeMismatchError);
  const long = new PartReader(chunks("abcdef"));
  await rejects(
    new Response(long.next(4, { last: true })).text(),
    SizeMismatchError,
  );
});

Deno.test("PartReader: the last part fails when the source fails at its end", async () => {
  const failure = new Error("verification failed at the end");
  let sent = false;
  const source = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) return controller.error(failure);
      sent = true;
      controller.enqueue(new TextEncoder().encode("abcd"));
    },
  });
  const parts = new PartReader(source);
  await rejects(
    new Response(parts.next(4, { last: true })).text(),
    (err) => err === failure,
  );
});
