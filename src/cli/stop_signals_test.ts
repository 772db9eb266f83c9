import assert from "node:assert";
import {
  REPEAT_WINDOW_MS,
  signalExitCode,
  stopSignalHandler,
} from "./stop_signals.ts";

function recorder() {
  const calls: string[] = [];
  let clock = 0;
  const handler = stopSignalHandler({
    stop: () => void calls.push("stop"),
    exit: (code) => void calls.push(`exit ${code}`),
    now: () => clock,
  });
  return {
    calls,
    handler,
    advance(ms: number) {
      clock += ms;
    },
  };
}

Deno.test("stop signals: the first stops gracefully, a quick repeat is the same request", () => {
  const { calls, handler, advance } = recorder();
  handler("SIGINT");
  assert.deepStrictEqual(calls, ["stop"]);
  advance(5);
  handler("SIGINT");
  advance(REPEAT_WINDOW_MS - 5);
  handler("SIGTERM");
  assert.deepStrictEqual(calls, ["stop"]);
});

Deno.test("stop signals: a later one exits at once with 128 + its number", () => {
  const { calls, handler, advance } = recorder();
  handler("SIGTERM");
  advance(REPEAT_WINDOW_MS + 1);
  handler("SIGINT");
  advance(1);
  handler("SIGTERM");
  assert.deepStrictEqual(calls, ["stop", "exit 130", "exit 143"]);
  assert.strictEqual(signalExitCode("SIGINT"), 130);
  assert.strictEqual(signalExitCode("SIGTERM"), 143);
});
