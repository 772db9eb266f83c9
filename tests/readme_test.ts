/**
 * The README's quick start, run as written: its first command (`task
 * start`) serves a copy of this repository, and the shell blocks of its
 * "Quick start" section run against it with bash.
 *
 * Two substitutions only, both documented equivalences: `npx -y
 * deno@2.9.6` is this very Deno, and port 8000 becomes a free port (the
 * server reads `PORT`), so the test never collides with a server a
 * developer runs.
 */

import assert from "node:assert";
import { dirname, join } from "node:path";
import { IN_CI } from "./services.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const README = await Deno.readTextFile(join(ROOT, "README.md"));

/** The fenced `sh` blocks of `markdown`, in order. */
function shellBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```(?:sh|bash|shell)\n([\s\S]*?)^```$/gm)].map(
    (m) => m[1],
  );
}

/** The text of the `## Quick start` section, or `undefined`. */
function quickStartSection(markdown: string): string | undefined {
  const match = markdown.match(
    /^## Quick start\s*$([\s\S]*?)(?=^## |(?![\s\S]))/m,
  );
  return match?.[1];
}

function stripComment(line: string): string {
  return line.replace(/\s+#.*$/, "").trim();
}

const startLine = shellBlocks(README)[0]?.split("\n").map(stripComment)
  .find((line) => /\btask start$/.test(line));
const section = quickStartSection(README);
const missing = !startLine
  ? "the README's first shell block has no `task start` command"
  : !section
  ? "the README has no `## Quick start` section"
  : undefined;
if (missing) {
  if (IN_CI) throw new Error(missing);
  console.error(
    `%cskipping the README quick start test: ${missing}`,
    "color: yellow",
  );
}

Deno.test({
  name: "README: the quick start works as written",
  ignore: missing !== undefined,
  async fn() {
    const copy = await Deno.makeTempDir({ prefix: "blobstore-readme-" });
    const port = freePort();
    const env = {
      PORT: String(port),
      PATH: `${dirname(Deno.execPath())}:${Deno.env.get("PATH") ?? ""}`,
      MONGODB_URL: "",
      SWIFT_AUTH_URL: "",
      BLOBSTORE_TOKEN: "",
      BLOBSTORE_DATA: "",
      NO_COLOR: "1",
    };
    const server = new Deno.Command("bash", {
      args: ["-c", `exec ${asThisDeno(startLine!)}`],
      cwd: copy,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    try {
      await copyRepository(ROOT, copy);
      const child = server.spawn();
      const output = collect(child.stderr);
      try {
        // The lines it prints at start come in more than one write.
        await waitFor(() => /data in .*\n/.test(output.text), child);
        assert.match(
          output.text,
          new RegExp(`listening on http://127\\.0\\.0\\.1:${port}/`),
        );
        assert.match(output.text, /data in .*data/);

        const script = shellBlocks(section!)
          .flatMap((block) => block.split("\n"))
          .filter((line) => !/\btask (start|test)\b/.test(line))
          .map((line) =>
            asThisDeno(line).replaceAll("127.0.0.1:8000", `127.0.0.1:${port}`)
          )
          .join("\n");
        const run = await new Deno.Command("bash", {
          args: ["-euo", "pipefail", "-c", script],
          cwd: copy,
          env,
          stdin: "null",
        }).output();
        const stdout = new TextDecoder().decode(run.stdout);
        const stderr = new TextDecoder().decode(run.stderr);
        assert.strictEqual(
          run.code,
          0,
          `quick start failed:\n${stdout}\n${stderr}\n${output.text}`,
        );
        // The comments in the quick start promise these outputs.
        for (
          const line of shellBlocks(section!).flatMap((b) => b.split("\n"))
        ) {
          const promised = line.match(/#\s*(?:→|prints:?)\s*(.+)$/)?.[1];
          if (promised) {
            assert(
              stdout.includes(promised.trim()),
              `expected ${promised} in:\n${stdout}`,
            );
          }
        }
      } finally {
        child.kill("SIGINT");
        const status = await child.status;
        await child.stdout.cancel();
        assert.strictEqual(status.code, 0, output.text);
      }
    } finally {
      await Deno.remove(copy, { recursive: true });
    }
  },
});

/** Runs `npx -y deno@…` as this Deno, which is what it fetches. */
function asThisDeno(line: string): string {
  return stripComment(line).replace(/^npx -y deno@[\d.]+ /, "deno ");
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

async function copyRepository(from: string, to: string): Promise<void> {
  const skip = new Set([".git", ".state", "data", "node_modules", "coverage"]);
  for await (const entry of Deno.readDir(from)) {
    if (skip.has(entry.name)) continue;
    const { code } = await new Deno.Command("cp", {
      args: ["-R", join(from, entry.name), to],
    }).output();
    if (code !== 0) throw new Error(`could not copy ${entry.name}`);
  }
}

function collect(stream: ReadableStream<Uint8Array>): { text: string } {
  const output = { text: "" };
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      output.text += decoder.decode(chunk, { stream: true });
    }
  })().catch(() => {});
  return output;
}

async function waitFor(
  condition: () => boolean,
  child: Deno.ChildProcess,
  ms = 60_000,
): Promise<void> {
  let exited = false;
  child.status.then(() => exited = true);
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (exited) throw new Error("the server exited before it listened");
    if (Date.now() > deadline) {
      throw new Error("the server did not start in time");
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
