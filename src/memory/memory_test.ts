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

Deno.test("MemoryCatalog + MemoryBackend: store contract", async (t) => {
  await testStoreContract(t, () =>
    Promise.resolve({
      catalog: new MemoryCatalog(),
      backend: new MemoryBackend(),
      close: noop,
    }));
});

Deno.test("MemoryCatalog: catalog contract", async (t) => {
  await testCatalogContract(
    t,
    () => Promise.resolve({ catalog: new MemoryCatalog(), close: noop }),
  );
});
