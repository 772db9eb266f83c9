/**
 * The little XML that S3 speaks: reading the text of named elements out of
 * an answer (listings, errors, upload ids) and escaping text into a request
 * body (`CompleteMultipartUpload`, `DeleteObjects`). S3's answers are
 * flat, machine-written documents; this reads exactly what the backend
 * needs from them and nothing more, so no XML parser is loaded.
 *
 * @module
 */

const ENTITIES: Record<string, string> = {
  amp: "&",
  lt: "<",
  gt: ">",
  quot: '"',
  apos: "'",
};

/**
 * Decodes the five predefined XML entities and numeric character
 * references in `text`; CDATA sections are taken as they are.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { decodeXml } from "./xml.ts";
 *
 * assert.strictEqual(decodeXml("a &amp; b &#233; &#x41;"), "a & b é A");
 * ```
 */
export function decodeXml(text: string): string {
  const cdata = text.match(/^<!\[CDATA\[([\s\S]*)\]\]>$/);
  if (cdata) return cdata[1];
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name) => {
    if (name[0] !== "#") return ENTITIES[name] ?? whole;
    const code = name[1] === "x" || name[1] === "X"
      ? parseInt(name.slice(2), 16)
      : parseInt(name.slice(1), 10);
    return Number.isFinite(code) ? String.fromCodePoint(code) : whole;
  });
}

/**
 * Escapes `text` for an XML element's content.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { escapeXml } from "./xml.ts";
 *
 * assert.strictEqual(escapeXml(`a<b & "c"`), "a&lt;b &amp; &quot;c&quot;");
 * ```
 */
export function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    (c) =>
      c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === "&"
        ? "&amp;"
        : c === '"'
        ? "&quot;"
        : "&apos;",
  );
}

/**
 * The raw content of every `<tag>…</tag>` element in `xml`, in document
 * order (nested elements of another name stay inside). An element that is
 * written empty (`<tag/>`) yields `""`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { elements } from "./xml.ts";
 *
 * const xml = "<R><Contents><Key>a</Key></Contents><Contents><Key>b</Key></Contents></R>";
 * assert.deepStrictEqual(elements(xml, "Contents"), ["<Key>a</Key>", "<Key>b</Key>"]);
 * ```
 */
export function elements(xml: string, tag: string): string[] {
  const pattern = new RegExp(
    `<${tag}(?:\\s[^>]*)?(?:/>|>([\\s\\S]*?)</${tag}>)`,
    "g",
  );
  return [...xml.matchAll(pattern)].map((m) => m[1] ?? "");
}

/**
 * The decoded text of the first `<tag>` element in `xml`, or `undefined`.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { text } from "./xml.ts";
 *
 * assert.strictEqual(text("<Error><Code>NoSuchKey</Code></Error>", "Code"), "NoSuchKey");
 * assert.strictEqual(text("<Error/>", "Code"), undefined);
 * ```
 */
export function text(xml: string, tag: string): string | undefined {
  const found = elements(xml, tag)[0];
  return found === undefined ? undefined : decodeXml(found.trim());
}
