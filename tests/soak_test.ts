/**
 * The soak in its bounded form for CI: fewer clients for a few seconds
 * (`SOAK_CLIENTS`, `SOAK_SECONDS` and `SOAK_SEED` change it). The full
 * form is `deno task soak` (scripts/soak.ts): 32 clients for 60 s.
 *
 * @module
 */

import assert from "node:assert";
import { formatReport, runSoak } from "../scripts/soak.ts";

const clients = Number(Deno.env.get("SOAK_CLIENTS") ?? 8);
const seconds = Number(Deno.env.get("SOAK_SECONDS") ?? 12);
const seed = Deno.env.get("SOAK_SEED");

Deno.test("soak: concurrent clients over loopback with GC alongside lose and leak nothing", async () => {
  const report = await runSoak({
    clients,
    durationMs: seconds * 1000,
    seed: seed === undefined ? undefined : Number(seed),
    gcIntervalMs: 1000,
  });
  console.log(formatReport(report));
  assert.deepStrictEqual(
    report.failures,
    [],
    `replay with SOAK_SEED=${report.seed}`,
  );
  assert.strictEqual(report.lost + report.corrupted, 0);
  assert.strictEqual(report.leaked + report.dangling, 0);
  assert(report.verified > 0, "nothing was live at the end");
  assert(report.gcRuns > 0, "the GC never ran");
  for (
    const kind of ["put", "put-dup", "get-range", "get-full", "part", "finish"]
  ) {
    assert(report.latency[kind]?.count > 0, `no ${kind} completed`);
  }
});
