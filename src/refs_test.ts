import { ok, strictEqual, throws } from "node:assert";
import { createHash } from "node:crypto";
import { BadParamsError } from "./errors.ts";
import { Refs } from "./refs.ts";

const hashes = Array.from(
  { length: 20_000 },
  (_, i) => createHash("sha384").update(String(i)).digest("hex"),
);

Deno.test("Refs: has exactly what was added, across growth", () => {
  const refs = new Refs(); // starts small: forces several resizes
  for (const h of hashes.slice(0, 10_000)) refs.add(h);
  strictEqual(refs.size, 10_000);
  for (const h of hashes.slice(0, 10_000)) ok(refs.has(h), h);
  for (const h of hashes.slice(10_000)) ok(!refs.has(h), h);
});

Deno.test("Refs: adding twice counts once", () => {
  const refs = new Refs(10);
  refs.add(hashes[0]);
  refs.add(hashes[0]);
  strictEqual(refs.size, 1);
});

Deno.test("Refs: implausible hashes", () => {
  const refs = new Refs();
  throws(() => refs.add("abc"), BadParamsError);
  throws(() => refs.add(hashes[0].toUpperCase()), BadParamsError);
  ok(!refs.has("abc"));
  ok(!refs.has(""));
  strictEqual(refs.size, 0);
});

Deno.test("Refs: hashes differing only past the stored prefix are distinct when it differs", () => {
  const refs = new Refs();
  const a = "0".repeat(31) + "1" + "0".repeat(64);
  const b = "0".repeat(96);
  refs.add(a);
  ok(refs.has(a));
  ok(!refs.has(b));
});
