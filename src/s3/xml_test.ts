import { deepStrictEqual, strictEqual } from "node:assert";
import { decodeXml, elements, escapeXml, text } from "./xml.ts";

Deno.test("xml: elements with attributes, empty elements, nesting of other names", () => {
  const xml =
    `<?xml version='1.0'?><R xmlns="x"><Contents a="1"><Key>k&amp;1</Key>` +
    `<Size>3</Size></Contents><Contents/><IsTruncated>false</IsTruncated></R>`;
  deepStrictEqual(elements(xml, "Contents").length, 2);
  strictEqual(text(elements(xml, "Contents")[0], "Key"), "k&1");
  strictEqual(text(xml, "IsTruncated"), "false");
  strictEqual(text(xml, "Missing"), undefined);
});

Deno.test("xml: escaping round-trips through decoding", () => {
  const raw = `a<b>&"c"'d'é`;
  strictEqual(decodeXml(escapeXml(raw)), raw);
  strictEqual(decodeXml("<![CDATA[<raw & text>]]>"), "<raw & text>");
});
