import { deepStrictEqual } from "node:assert";
import { type ListingEntry, segmentName, segmentSets } from "./segment_sets.ts";

async function* listing(
  entries: [string, number, string][],
): AsyncIterable<ListingEntry> {
  for (const [name, bytes, last_modified] of entries) {
    yield { name, bytes, last_modified };
  }
}

Deno.test("segmentSets: one set per blob, newest time, total size", async () => {
  const sets = await Array.fromAsync(segmentSets(
    listing([
      [segmentName("b", "x", 0), 10, "2024-01-01T00:00:02.5"],
      [segmentName("b", "x", 1), 10, "2024-01-01T00:00:03"],
      [segmentName("b", "x", 2), 3, "2024-01-01T00:00:01"],
      [segmentName("b", "y", 0), 7, "2024-01-01T00:00:00"],
    ]),
    "b",
  ));
  deepStrictEqual(sets, [
    {
      name: "x",
      count: 3,
      size: 23,
      modified: new Date("2024-01-01T00:00:03Z"),
    },
    {
      name: "y",
      count: 1,
      size: 7,
      modified: new Date("2024-01-01T00:00:00Z"),
    },
  ]);
});

Deno.test("segmentSets: other buckets and foreign names are passed over", async () => {
  const sets = await Array.fromAsync(segmentSets(
    listing([
      [segmentName("b2", "x", 0), 1, "2024-01-01T00:00:00"],
      ["b/no-index", 1, "2024-01-01T00:00:00"],
      ["b/x/123", 1, "2024-01-01T00:00:00"],
      ["x/00000000", 1, "2024-01-01T00:00:00"],
      [segmentName("b", "z", 0), 5, "2024-01-01T00:00:00"],
    ]),
    "b",
  ));
  deepStrictEqual(sets.map((s) => [s.name, s.size]), [["z", 5]]);
});

Deno.test("segmentSets: an empty listing has no sets", async () => {
  deepStrictEqual(await Array.fromAsync(segmentSets(listing([]), "b")), []);
});
