import { ok, rejects, strictEqual } from "node:assert";
import { concatStreams } from "./concat.ts";
import { CorruptBlobError } from "./errors.ts";

const section = (text: string, size = text.length, onOpen?: () => void) => ({
  size,
  open: () => {
    onOpen?.();
    return Promise.resolve(new Blob([text]).stream());
  },
});

Deno.test("concatStreams: sections in order, opened lazily", async () => {
  const opened: number[] = [];
  const stream = concatStreams([
    section("ab", 2, () => opened.push(0)),
    section("", 0, () => opened.push(1)),
    section("cde", 3, () => opened.push(2)),
  ]);
  strictEqual(opened.length, 0);
  strictEqual(await new Response(stream).text(), "abcde");
  strictEqual(opened.join(), "0,1,2");
});

Deno.test("concatStreams: a section of the wrong size errors the stream with CorruptBlobError", async () => {
  await rejects(
    new Response(concatStreams([section("ab", 3)])).text(),
    CorruptBlobError,
  );
  await rejects(
    new Response(concatStreams([section("abcd", 3)])).text(),
    CorruptBlobError,
  );
});

Deno.test("concatStreams: cancel reaches the section being read, later ones never open", async () => {
  let cancelled = false;
  let laterOpened = false;
  const stream = concatStreams([
    {
      size: 6,
      open: () =>
        Promise.resolve(
          new ReadableStream({
            pull(c) {
              c.enqueue(new Uint8Array(3));
            },
            cancel() {
              cancelled = true;
            },
          }),
        ),
    },
    section("x", 1, () => (laterOpened = true)),
  ]);
  const reader = stream.getReader();
  await reader.read();
  await reader.cancel();
  ok(cancelled);
  ok(!laterOpened);
});
