import { MemoryBackend } from "../src/backends/memory.ts";
import { MemoryCatalog } from "../src/catalogs/memory.ts";
import { testBackendContract } from "./backend_contract.ts";

const noop = () => Promise.resolve();

Deno.test("MemoryBackend: backend contract", async (t) => {
  await testBackendContract(
    t,
    () => Promise.resolve({ backend: new MemoryBackend(), close: noop }),
  );
});
