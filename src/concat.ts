/**
 * One stream made of several, opened one at a time.
 *
 * @module
 */

import { CorruptBlobError } from "./errors.ts";

/**
 * One section of a concatenated stream: how to open it, and how many bytes
 * it must yield.
 */
export interface StreamSection {
  /** Opens the section's bytes; called only when the reader gets there. */
  open(): Promise<ReadableStream<Uint8Array>>;
  /** The number of bytes the section must yield. */
  size: number;
}

/**
 * Returns a stream of the bytes of every section in order. Each section is
 * opened only when the previous one is exhausted, so a reader that stops
 * early never opens the rest; cancelling the result cancels the section
 * being read. A section that yields more or fewer bytes than its `size`
 * errors the stream with a `CorruptBlobError` (the sections are stored
 * objects whose sizes were recorded when they were verified), so a damaged
 * part never passes silently as a shorter or shifted blob.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { concatStreams } from "./concat.ts";
 *
 * const section = (text: string) => ({
 *   open: () => Promise.resolve(new Blob([text]).stream()),
 *   size: text.length,
 * });
 * const joined = concatStreams([section("ab"), section("cd")]);
 * assert((await new Response(joined).text()) === "abcd");
 * ```
 */
export function concatStreams(
  sections: StreamSection[],
): ReadableStream<Uint8Array> {
  let next = 0;
  let current: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let expected = 0;
  let got = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        if (!current) {
          if (next >= sections.length) return controller.close();
          const section = sections[next++];
          current = (await section.open()).getReader();
          expected = section.size;
          got = 0;
        }
        const { done, value } = await current.read();
        if (done) {
          current = undefined;
          if (got !== expected) throw sizeError(next - 1, expected, got);
          continue;
        }
        got += value.byteLength;
        if (got > expected) {
          await current.cancel();
          throw sizeError(next - 1, expected, got);
        }
        if (value.byteLength === 0) continue;
        return controller.enqueue(value);
      }
    },
    async cancel(reason) {
      await current?.cancel(reason);
    },
  });
}

function sizeError(
  section: number,
  expected: number,
  got: number,
): CorruptBlobError {
  return new CorruptBlobError(
    `section ${section} is corrupt in storage (expected ${expected} bytes, got ${
      got > expected ? "at least " : ""
    }${got})`,
  );
}
