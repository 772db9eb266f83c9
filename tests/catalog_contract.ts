/**
 * The contract every {@linkcode Catalog} must meet, step by step, as one
 * suite that each catalog's test file runs on its own fixture. The store
 * contract covers the same rules through the store; this one pins down each
 * conditional step, so a new catalog fails here first, with a precise name.
 *
 * @module
 */

import { deepStrictEqual, ok, strictEqual } from "node:assert";
import type { Catalog, PartRecord, UploadRecord } from "../src/catalog.ts";
import { collect, hashOf } from "./helpers.ts";

/** A fresh, empty catalog, and how to dispose of it. */
export interface CatalogFixture {
  /** The catalog under test. */
  catalog: Catalog;
  /** Releases whatever the fixture holds. */
  close(): Promise<void>;
}

const part = (hash: string, offset = 0, size = 10): PartRecord => ({
  hash,
  size,
  offset,
  complete: false,
});

/** A SHA-384 state's size as `ResumableSha384.save` returns it. */
const STATE_SIZE = 212;

const randomState = () => crypto.getRandomValues(new Uint8Array(STATE_SIZE));

/** S3's most parts per upload, the most the service's `maxParts` may be. */
export const MOST_PARTS = 10_000;

/**
 * Part `i` of a big upload: 5 MiB parts, complete unless `complete` says
 * otherwise, with a hash of its own (`salt` gives another).
 */
function bigPart(i: number, complete = true, salt = ""): PartRecord {
  return {
    hash: hashOf(`part ${i}${salt}`),
    size: 5 * 1024 * 1024,
    offset: i * 5 * 1024 * 1024,
    complete,
  };
}

/**
 * An upload record of {@linkcode MOST_PARTS} parts but its last two:
 * every part complete but part 5000, part 9998 a gap (`null`), part 9999
 * beyond the end. Inserting it whole is how a contract step gets there
 * quickly; the catalog steps then fill it in.
 */
export function bigUpload(id: string, expires: Date): UploadRecord {
  const parts: (PartRecord | null)[] = Array.from(
    { length: MOST_PARTS - 1 },
    (_, i) => bigPart(i, i !== 5000),
  );
  parts[MOST_PARTS - 2] = null;
  return { id, expires, parts };
}

/** Runs the catalog contract as steps of `t`, each on a fresh fixture. */
export async function testCatalogContract(
  t: Deno.TestContext,
  open: () => Promise<CatalogFixture>,
): Promise<void> {
  const step = (
    name: string,
    fn: (catalog: Catalog) => Promise<void>,
    ignore = false,
  ) =>
    t.step({
      name,
      ignore,
      fn: async () => {
        const fixture = await open();
        try {
          await fn(fixture.catalog);
        } finally {
          await fixture.close();
        }
      },
    });
  const h = (s: string) => hashOf(s);

  await step(
    "references: insert once, get, touch, conditional remove",
    async (c) => {
      const ref = {
        hash: h("a"),
        name: `${h("a")}-0123456789abcdef`,
        putTime: new Date(1000),
        size: 5,
      };
      strictEqual(await c.getRef(ref.hash), undefined);
      ok(await c.insertRef(ref));
      ok(!(await c.insertRef({ ...ref, name: "other", putTime: new Date(9) })));
      deepStrictEqual(await c.getRef(ref.hash), ref);
      deepStrictEqual(await c.touchRef(ref.hash, new Date(2000)), {
        ...ref,
        putTime: new Date(2000),
      });
      ok(!(await c.removeRef(ref.hash, new Date(1000))));
      ok(await c.removeRef(ref.hash, new Date(2000)));
      ok(!(await c.removeRef(ref.hash, new Date(2000))));
      strictEqual(await c.getRef(ref.hash), undefined);
      strictEqual(await c.touchRef(ref.hash, new Date(3000)), undefined);
    },
  );

  await step("references: records returned are copies", async (c) => {
    const ref = {
      hash: h("copy"),
      name: "n",
      putTime: new Date(1000),
      size: 5,
    };
    await c.insertRef(ref);
    ref.size = 99;
    const got = (await c.getRef(ref.hash))!;
    strictEqual(got.size, 5);
    got.putTime.setTime(0);
    strictEqual((await c.getRef(ref.hash))!.putTime.getTime(), 1000);
  });

  await step(
    "references: refsPutBefore includes the cut-off, excludes later ones",
    async (c) => {
      for (const [s, ms] of [["x", 1000], ["y", 2000], ["z", 3000]] as const) {
        await c.insertRef({
          hash: h(s),
          name: s,
          putTime: new Date(ms),
          size: 1,
        });
      }
      const got = (await collect(c.refsPutBefore(new Date(2000)))).map((r) =>
        r.name
      ).sort();
      deepStrictEqual(got, ["x", "y"]);
      await c.touchRef(h("x"), new Date(5000));
      deepStrictEqual(
        (await collect(c.refsPutBefore(new Date(2000)))).map((r) => r.name),
        ["y"],
      );
      deepStrictEqual(await collect(c.refsPutBefore(new Date(0))), []);
    },
  );

  await step("uploads: insert, get, list", async (c) => {
    const expires = new Date(10_000);
    await c.insertUpload({ id: "u1", expires, parts: [] });
    await c.insertUpload({ id: "u2", expires, parts: [] });
    deepStrictEqual(await c.getUpload("u1"), { id: "u1", expires, parts: [] });
    strictEqual(await c.getUpload("nope"), undefined);
    deepStrictEqual((await collect(c.uploads())).map((u) => u.id).sort(), [
      "u1",
      "u2",
    ]);
  });

  await step(
    "uploads: initPart grows the parts with nulls, into empty or incomplete slots only",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      ok(await c.initPart("u", 2, part(h("p2"), 20)));
      deepStrictEqual((await c.getUpload("u"))!.parts, [
        null,
        null,
        part(h("p2"), 20),
      ]);
      // Incomplete: not final, a re-send may replace it (Go's initializePart).
      ok(await c.initPart("u", 2, part(h("other"), 21)));
      ok(await c.initPart("u", 0, part(h("p0"))));
      deepStrictEqual((await c.getUpload("u"))!.parts, [
        part(h("p0")),
        null,
        part(h("other"), 21),
      ]);
      // Complete: final.
      ok(await c.completePart("u", 2, h("other")));
      ok(!(await c.initPart("u", 2, part(h("p2"), 20))));
      strictEqual((await c.getUpload("u"))!.parts[2]?.hash, h("other"));
      ok(!(await c.initPart("missing", 0, part(h("p0")))));
    },
  );

  await step("uploads: completePart only on a matching hash", async (c) => {
    await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
    await c.initPart("u", 0, part(h("p0")));
    ok(!(await c.completePart("u", 0, h("wrong"))));
    ok(!(await c.completePart("u", 1, h("p0"))));
    ok(!(await c.completePart("missing", 0, h("p0"))));
    ok(await c.completePart("u", 0, h("p0")));
    deepStrictEqual((await c.getUpload("u"))!.parts, [{
      ...part(h("p0")),
      complete: true,
    }]);
  });

  await step(
    "uploads: the final hash is set once; no new parts after",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      ok(await c.setUploadHash("u", h("whole")));
      ok(!(await c.setUploadHash("u", h("again"))));
      strictEqual((await c.getUpload("u"))!.hash, h("whole"));
      ok(!(await c.initPart("u", 0, part(h("p0")))));
      ok(!(await c.setUploadHash("missing", h("whole"))));
    },
  );

  await step(
    "uploads: owner only when finished, once, and it moves the expiry",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      ok(!(await c.setOwner("u", "alice", new Date(20_000))));
      await c.setUploadHash("u", h("whole"));
      ok(await c.setOwner("u", "alice", new Date(20_000)));
      ok(await c.setOwner("u", "alice", new Date(30_000)));
      ok(!(await c.setOwner("u", "bob", new Date(40_000))));
      const got = (await c.getUpload("u"))!;
      strictEqual(got.owner, "alice");
      strictEqual(got.expires.getTime(), 30_000);
      ok(!(await c.setOwner("missing", "alice", new Date(20_000))));
    },
  );

  await step(
    "uploads: removal only while the owner is unchanged",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      await c.setUploadHash("u", h("whole"));
      await c.setOwner("u", "alice", new Date(20_000));
      ok(!(await c.removeUpload("u", undefined)));
      ok(!(await c.removeUpload("u", "bob")));
      ok(await c.removeUpload("u", "alice"));
      strictEqual(await c.getUpload("u"), undefined);
      ok(!(await c.removeUpload("u", "alice")));
      await c.insertUpload({ id: "v", expires: new Date(10_000), parts: [] });
      ok(await c.removeUpload("v", undefined));
    },
  );

  await step(
    "uploads: removeExpiredUploads removes exactly those expired before now",
    async (c) => {
      await c.insertUpload({ id: "old", expires: new Date(1000), parts: [] });
      await c.insertUpload({ id: "edge", expires: new Date(2000), parts: [] });
      await c.insertUpload({ id: "new", expires: new Date(3000), parts: [] });
      strictEqual(await c.removeExpiredUploads(new Date(2000)), 1);
      deepStrictEqual((await collect(c.uploads())).map((u) => u.id).sort(), [
        "edge",
        "new",
      ]);
      // Moving the expiry (setOwner) keeps a record from expiring.
      await c.setUploadHash("edge", h("e"));
      await c.setOwner("edge", "alice", new Date(9000));
      strictEqual(await c.removeExpiredUploads(new Date(5000)), 1);
      deepStrictEqual((await collect(c.uploads())).map((u) => u.id), ["edge"]);
    },
  );

  await step(
    "uploads: concurrent initPart of one slot: each whole; once complete, none",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      const names = ["a", "b", "c", "d"];
      await Promise.all(names.map((s) => c.initPart("u", 1, part(h(s)))));
      const last = (await c.getUpload("u"))!.parts[1]!;
      ok(names.some((s) => last.hash === h(s)), "one of them, whole");
      deepStrictEqual(last, part(last.hash));
      ok(await c.completePart("u", 1, last.hash));
      const results = await Promise.all(
        names.map((s) => c.initPart("u", 1, part(h(s)))),
      );
      deepStrictEqual(results, [false, false, false, false]);
      const results2 = await Promise.all(
        [0, 2, 3, 4].map((i) => c.initPart("u", i, part(h(`p${i}`), i * 10))),
      );
      deepStrictEqual(results2, [true, true, true, true]);
      strictEqual((await c.getUpload("u"))!.parts.filter(Boolean).length, 5);
    },
  );

  await step(
    "references: concurrent inserts of one hash: exactly one wins",
    async (c) => {
      const results = await Promise.all(
        [1, 2, 3].map((i) =>
          c.insertRef({
            hash: h("dup"),
            name: `n${i}`,
            putTime: new Date(i),
            size: 1,
          })
        ),
      );
      strictEqual(results.filter(Boolean).length, 1);
    },
  );
  await step(
    "multipart: the registry of multipart blobs is one compare-and-set per change",
    async (c) => {
      const registry = c.multipart;
      const hash = h("whole");
      const finished = new Date(1000);
      strictEqual(await registry.get(hash), undefined);
      ok(
        await registry.compareAndSet(hash, undefined, {
          uploadId: "u1",
          finished,
        }),
      );
      ok(
        !await registry.compareAndSet(hash, undefined, {
          uploadId: "u2",
          finished,
        }),
      );
      ok(
        !await registry.compareAndSet(hash, "u2", { uploadId: "u3", finished }),
      );
      deepStrictEqual(await registry.get(hash), { uploadId: "u1", finished });
      ok(
        await registry.compareAndSet(hash, "u1", { uploadId: "u2", finished }),
      );
      ok(
        await registry.compareAndSet(h("other"), undefined, {
          uploadId: "u9",
          finished,
        }),
      );
      const entries = [];
      for await (const entry of registry.entries()) entries.push(entry);
      entries.sort((a, b) => a.hash.localeCompare(b.hash));
      deepStrictEqual(
        entries,
        [
          { hash, uploadId: "u2", finished },
          { hash: h("other"), uploadId: "u9", finished },
        ].sort((a, b) => a.hash.localeCompare(b.hash)),
      );
      ok(!await registry.compareAndSet(hash, "u1", undefined));
      ok(await registry.compareAndSet(hash, "u2", undefined));
      strictEqual(await registry.get(hash), undefined);
      const racing = await Promise.all(
        ["a", "b", "c", "d"].map((id) =>
          registry.compareAndSet(hash, undefined, { uploadId: id, finished })
        ),
      );
      strictEqual(racing.filter(Boolean).length, 1, "exactly one registers");
    },
  );

  await step(
    "uploads: 10,000 parts (S3's limit) read back exactly, finish, own, and go whole",
    async (c) => {
      const expires = new Date(10_000);
      const upload = bigUpload("big", expires);
      await c.insertUpload(upload);
      deepStrictEqual(await c.getUpload("big"), upload, "as inserted");
      const last = MOST_PARTS - 1;
      ok(await c.initPart("big", last - 1, bigPart(last - 1, false)), "a gap");
      ok(await c.initPart("big", last, bigPart(last, false)), "at the end");
      ok(
        await c.initPart("big", 5000, bigPart(5000, false, "again")),
        "incomplete: replaced",
      );
      ok(!await c.initPart("big", 4999, bigPart(4999, false, "x")), "final");
      ok(await c.completePart("big", last - 1, bigPart(last - 1).hash));
      ok(await c.completePart("big", last, bigPart(last).hash));
      ok(await c.completePart("big", 5000, bigPart(5000, true, "again").hash));
      const parts = Array.from(
        { length: MOST_PARTS },
        (_, i) => bigPart(i, true, i === 5000 ? "again" : ""),
      );
      const full: UploadRecord = { id: "big", expires, parts };
      deepStrictEqual(await c.getUpload("big"), full, "every part complete");
      deepStrictEqual(await collect(c.uploads()), [full], "listed");
      if (c.advanceHashState) {
        const state = randomState();
        ok(await c.advanceHashState("big", 0, { parts: MOST_PARTS, state }));
        full.hashState = { parts: MOST_PARTS, state };
      }
      ok(await c.setUploadHash("big", h("whole")));
      ok(!await c.initPart("big", MOST_PARTS, bigPart(MOST_PARTS)), "finished");
      ok(await c.setOwner("big", "alice", new Date(20_000)));
      deepStrictEqual(await c.getUpload("big"), {
        ...full,
        hash: h("whole"),
        owner: "alice",
        expires: new Date(20_000),
      }, "finished and owned");
      ok(!await c.removeUpload("big", undefined), "owned: not as unowned");
      ok(await c.removeUpload("big", "alice"));
      strictEqual(await c.getUpload("big"), undefined);
      deepStrictEqual(await collect(c.uploads()), []);
      // Expiry removes a big record whole too.
      await c.insertUpload(bigUpload("old", new Date(1000)));
      strictEqual(await c.removeExpiredUploads(new Date(2000)), 1);
      strictEqual(await c.getUpload("old"), undefined);
      deepStrictEqual(await collect(c.uploads()), []);
    },
  );

  await step(
    "uploads: info is written by insertUpload and kept as is by every step",
    async (c) => {
      const info = '{"length":433,"metadata":"ünïcode, \\"quoted\\""}';
      await c.insertUpload({
        id: "u",
        expires: new Date(10_000),
        parts: [],
        info,
      });
      await c.insertUpload({
        id: "none",
        expires: new Date(10_000),
        parts: [],
      });
      strictEqual((await c.getUpload("u"))!.info, info);
      ok(!("info" in (await c.getUpload("none"))!), "none: no info at all");
      ok(await c.initPart("u", 0, part(h("p0"))));
      ok(await c.completePart("u", 0, h("p0")));
      await c.advanceHashState?.("u", 0, { parts: 1, state: randomState() });
      ok(await c.setUploadHash("u", h("whole")));
      ok(await c.setOwner("u", "alice", new Date(20_000)));
      strictEqual((await c.getUpload("u"))!.info, info, "after every step");
      deepStrictEqual(
        (await collect(c.uploads())).map((u) => u.info).sort(),
        [info, undefined],
      );
      // A record too big for one write in some catalogs keeps it too.
      const parts = bigUpload("big", new Date(10_000)).parts.slice(0, 700);
      await c.insertUpload({
        id: "big",
        expires: new Date(10_000),
        parts,
        info,
      });
      deepStrictEqual(await c.getUpload("big"), {
        id: "big",
        expires: new Date(10_000),
        parts,
        info,
      });
    },
  );

  // The optional steps; each skipped for a catalog without it.
  const probe = await open();
  const noBatch = typeof probe.catalog.removeRefs !== "function";
  const noHashState = typeof probe.catalog.advanceHashState !== "function";
  await probe.close();
  const state = (parts: number) => ({ parts, state: randomState() });

  await step(
    "uploads: advanceHashState moves on only from the parts hashed, forwards",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      strictEqual((await c.getUpload("u"))!.hashState, undefined, "none yet");
      const one = state(1);
      ok(await c.advanceHashState!("u", 0, one), "from none, as from 0");
      deepStrictEqual((await c.getUpload("u"))!.hashState, one);
      ok(!await c.advanceHashState!("u", 0, state(2)), "a stale from");
      ok(!await c.advanceHashState!("u", 2, state(3)), "a from not reached");
      ok(!await c.advanceHashState!("u", 1, state(1)), "not forwards");
      ok(!await c.advanceHashState!("u", 1, state(0)), "backwards");
      deepStrictEqual((await c.getUpload("u"))!.hashState, one, "unchanged");
      const three = state(3);
      ok(await c.advanceHashState!("u", 1, three), "several parts at once");
      deepStrictEqual((await c.getUpload("u"))!.hashState, three);
      // A record inserted with a state moves on from it.
      const two = state(2);
      await c.insertUpload({
        id: "v",
        expires: new Date(10_000),
        parts: [],
        hashState: two,
      });
      deepStrictEqual((await c.getUpload("v"))!.hashState, two, "inserted");
      ok(!await c.advanceHashState!("v", 0, state(1)), "it has 2, not 0");
      ok(await c.advanceHashState!("v", 2, state(4)));
    },
    noHashState,
  );

  await step(
    "uploads: advanceHashState refuses a finished upload and an absent one",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      const one = state(1);
      ok(await c.advanceHashState!("u", 0, one));
      ok(await c.setUploadHash("u", h("whole")));
      ok(!await c.advanceHashState!("u", 1, state(2)), "finished");
      deepStrictEqual((await c.getUpload("u"))!.hashState, one, "kept");
      await c.insertUpload({ id: "f", expires: new Date(10_000), parts: [] });
      ok(await c.setUploadHash("f", h("whole")));
      ok(!await c.advanceHashState!("f", 0, state(1)), "finished, none yet");
      strictEqual((await c.getUpload("f"))!.hashState, undefined);
      ok(!await c.advanceHashState!("missing", 0, state(1)), "absent");
      strictEqual(await c.getUpload("missing"), undefined, "not created");
    },
    noHashState,
  );

  await step(
    "uploads: the hash state's bytes round-trip exactly, in records that are copies",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      const bytes = randomState();
      const sent = bytes.slice();
      ok(await c.advanceHashState!("u", 0, { parts: 1, state: bytes }));
      bytes.fill(0); // the caller reuses its buffer
      const got = (await c.getUpload("u"))!.hashState!;
      deepStrictEqual(got, { parts: 1, state: sent });
      strictEqual(
        Object.getPrototypeOf(got.state),
        Uint8Array.prototype,
        "a plain Uint8Array",
      );
      got.state.fill(1);
      got.parts = 7;
      deepStrictEqual((await c.getUpload("u"))!.hashState, {
        parts: 1,
        state: sent,
      });
      // A view stores its own bytes, not the rest of its buffer.
      const buffer = new Uint8Array(4096);
      crypto.getRandomValues(buffer);
      const view = buffer.subarray(100, 100 + STATE_SIZE);
      ok(await c.advanceHashState!("u", 1, { parts: 2, state: view }));
      deepStrictEqual((await c.getUpload("u"))!.hashState, {
        parts: 2,
        state: view.slice(),
      });
    },
    noHashState,
  );

  await step(
    "uploads: concurrent advances from one state: exactly one wins",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      let from = 0;
      for (let round = 0; round < 3; round++) {
        const candidates = [1, 2, 3, 4].map((n) => state(from + n));
        const results = await Promise.all(
          candidates.map((next) => c.advanceHashState!("u", from, next)),
        );
        strictEqual(results.filter(Boolean).length, 1, `round ${round}`);
        const winner = candidates[results.indexOf(true)];
        deepStrictEqual((await c.getUpload("u"))!.hashState, winner);
        from = winner.parts;
      }
    },
    noHashState,
  );

  await step(
    "uploads: the hash state survives setOwner, and uploads() lists it",
    async (c) => {
      await c.insertUpload({ id: "u", expires: new Date(10_000), parts: [] });
      await c.insertUpload({ id: "w", expires: new Date(10_000), parts: [] });
      const one = state(1);
      ok(await c.advanceHashState!("u", 0, one));
      ok(await c.setUploadHash("u", h("whole")));
      ok(await c.setOwner("u", "alice", new Date(20_000)));
      deepStrictEqual(await c.getUpload("u"), {
        id: "u",
        expires: new Date(20_000),
        parts: [],
        hash: h("whole"),
        owner: "alice",
        hashState: one,
      });
      const listed = (await collect(c.uploads())).sort((a, b) =>
        a.id < b.id ? -1 : 1
      );
      deepStrictEqual(listed.map((u) => u.hashState), [one, undefined]);
    },
    noHashState,
  );
  const ref = (name: string, time: number) => ({
    hash: h(name),
    name: `${h(name)}-${name}`,
    putTime: new Date(time),
    size: 1,
  });

  await step(
    "references: removeRefs removes only those whose put time is unchanged",
    async (c) => {
      const [kept, moved, other, absent, reput, alone] = [
        ref("kept", 1000),
        ref("moved", 1000),
        ref("other", 2000),
        ref("absent", 1000),
        ref("reput", 1000),
        ref("alone", 1000),
      ];
      for (const r of [kept, moved, other, reput, alone]) {
        ok(await c.insertRef(r));
      }
      await c.touchRef(moved.hash, new Date(9000));
      // Removed by someone else and put anew under another name.
      ok(await c.removeRef(reput.hash, reput.putTime));
      const fresh = {
        ...reput,
        name: `${reput.hash}-new`,
        putTime: new Date(5000),
      };
      ok(await c.insertRef(fresh));
      deepStrictEqual(await c.removeRefs!([]), new Set());
      const gone = await c.removeRefs!([kept, moved, other, absent, reput]);
      deepStrictEqual(
        [...gone].sort(),
        [kept.hash, other.hash, absent.hash, reput.hash].sort(),
      );
      strictEqual(await c.getRef(kept.hash), undefined);
      strictEqual(await c.getRef(other.hash), undefined);
      deepStrictEqual(await c.getRef(moved.hash), {
        ...moved,
        putTime: new Date(9000),
      });
      deepStrictEqual(await c.getRef(reput.hash), fresh, "the new put stays");
      deepStrictEqual(await c.getRef(alone.hash), alone, "not asked: stays");
    },
    noBatch,
  );

  await step(
    "references: removeRefs against touchRef: never both",
    async (c) => {
      for (let i = 0; i < 5; i++) {
        const r = ref(`race${i}`, 1000);
        ok(await c.insertRef(r));
        const [touched, gone] = await Promise.all([
          c.touchRef(r.hash, new Date(2000)),
          c.removeRefs!([r]),
        ]);
        const stored = await c.getRef(r.hash);
        if (gone.has(r.hash)) {
          strictEqual(stored, undefined, "removed: gone");
          strictEqual(touched, undefined, "removed: the touch found nothing");
        } else {
          ok(touched, "kept: the touch won");
          deepStrictEqual(stored, { ...r, putTime: new Date(2000) });
        }
      }
    },
    noBatch,
  );
}
