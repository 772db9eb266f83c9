import { ok, strictEqual } from "node:assert";
import { hashingStats } from "../hashing.ts";
import { MemoryBackend } from "./backend.ts";
import { MemoryCatalog } from "./catalog.ts";
import { testBackendContract } from "../../tests/backend_contract.ts";
import { testCatalogContract } from "../../tests/catalog_contract.ts";
import { testStoreContract } from "../../tests/store_contract.ts";

const noop = () => Promise.resolve();

Deno.test("MemoryBackend: backend contract", async (t) => {
  await testBackendContract(
    t,
    () => Promise.resolve({ backend: new MemoryBackend(), close: noop }),
  );
});

for (const hashing of ["inline", "worker"] as const) {
  Deno.test(`MemoryCatalog + MemoryBackend: store contract, hashing ${hashing}`, async (t) => {
    const before = hashingStats();
    await testStoreContract(t, () =>
      Promise.resolve({
        catalog: new MemoryCatalog(),
        backend: new MemoryBackend(),
        close: noop,
      }), { hashing });
    // The path named is the path taken: no silent fallback to inline.
    const after = hashingStats();
    strictEqual(after.unavailable, undefined);
    ok(after[hashing] > before[hashing]);
  });
}

Deno.test("MemoryCatalog: catalog contract", async (t) => {
  await testCatalogContract(
    t,
    () => Promise.resolve({ catalog: new MemoryCatalog(), close: noop }),
  );
});
