/**
 * The `blobstore` command line: picks the command, parses its options,
 * opens the data directory's seams for it, and turns every failure into a
 * one-line message and the exit code a shell expects (0 success, 1
 * failure, 2 usage error).
 *
 * @module
 */

import { MultipartBlobs } from "../multipart_blobs.ts";
import { openSeams, parseMaxParts } from "../server/config.ts";
import { type OptionSpecs, parseArgs, UsageError } from "./args.ts";
import type { Command, CommandContext } from "./command.ts";
import { gcCommand } from "./commands/gc.ts";
import { getCommand } from "./commands/get.ts";
import { putCommand } from "./commands/put.ts";
import { serveCommand } from "./commands/serve.ts";
import { statCommand } from "./commands/stat.ts";
import { uploadCommand } from "./commands/upload.ts";

const COMMANDS: Command[] = [
  putCommand,
  getCommand,
  statCommand,
  uploadCommand,
  gcCommand,
  serveCommand,
];

const GLOBAL_OPTIONS: OptionSpecs = {
  data: { type: "string", short: "d" },
  "max-parts": { type: "string" },
  help: { type: "boolean", short: "h" },
};

/**
 * The help text.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { usage } from "./main.ts";
 *
 * assert(usage().includes("serve"));
 * ```
 */
export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.usage.length));
  return [
    "blobstore: a content-addressed blob store (SHA-384)",
    "",
    "Usage: blobstore [--data DIR] [--max-parts N] COMMAND [ARGS…]",
    "",
    ...COMMANDS.map((c) => `  ${c.usage.padEnd(width)}  ${c.summary}`),
    "",
    "Options:",
    "  -d, --data DIR     the data directory (default $BLOBSTORE_DATA or ./data)",
    "      --max-parts N  the most parts an upload may have, 1 to 10000",
    "                     (default $BLOBSTORE_MAX_PARTS or 400)",
    "  -h, --help         show this help",
    "",
    "Every command but serve works on the data directory directly (safely",
    "beside a running server); MONGODB_URL and SWIFT_* switch both to",
    "MongoDB and Swift. Sizes take binary suffixes (5M = 5 MiB); durations",
    "look like 90s, 30m, 24h, 7d.",
  ].join("\n");
}

/**
 * Runs the command line `args` and resolves to its exit code.
 */
export async function main(args: string[]): Promise<number> {
  const context: CommandContext = {
    data: Deno.env.get("BLOBSTORE_DATA") || "./data",
    print: (line) => console.log(line),
    warn: (line) => console.error(line),
  };
  try {
    const index = commandIndex(args);
    const global = parseArgs(args.slice(0, index), GLOBAL_OPTIONS);
    const name = args[index];
    if (name === undefined || name === "help" || global.options.help) {
      if (name === undefined && !global.options.help) {
        throw new UsageError("missing COMMAND");
      }
      context.print(usage());
      return 0;
    }
    const command = COMMANDS.find((c) => c.name === name);
    if (!command) {
      throw new UsageError(`unknown command ${JSON.stringify(name)}`);
    }
    const parsed = parseArgs(args.slice(index + 1), {
      ...GLOBAL_OPTIONS,
      ...command.options,
    });
    if (parsed.options.help) {
      context.print(`Usage: blobstore ${command.usage}\n\n${command.summary}`);
      return 0;
    }
    const data = global.options.data ?? parsed.options.data;
    if (typeof data === "string") context.data = data;
    const maxParts = global.options["max-parts"] ??
      parsed.options["max-parts"];
    if (typeof maxParts === "string") {
      context.maxParts = maxPartsOption(maxParts);
    }
    if (command.opensSeams) return await command.run(context, parsed);
    const remote = command.remote?.(parsed);
    if (remote) return await remote(context);
    const seams = await openSeams({
      data: context.data,
      maxParts: context.maxParts,
    });
    try {
      const blobs = new MultipartBlobs(seams.store);
      return await command.run({ ...context, seams, blobs }, parsed);
    } finally {
      await seams.close();
    }
  } catch (err) {
    return report(context, err);
  }
}

/** The part count of `--max-parts`, or a {@linkcode UsageError}. */
function maxPartsOption(text: string): number {
  try {
    return parseMaxParts(text, "--max-parts");
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Where the command word is: past the global options and their values. */
function commandIndex(args: string[]): number {
  let i = 0;
  while (i < args.length && args[i].startsWith("-") && args[i] !== "-") {
    const arg = args[i];
    if (arg === "--") return i + 1;
    const long = arg.startsWith("--") ? arg.slice(2) : undefined;
    const name = long ??
      Object.keys(GLOBAL_OPTIONS).find((key) =>
        GLOBAL_OPTIONS[key].short === arg.slice(1, 2)
      );
    const spec = name === undefined ? undefined : GLOBAL_OPTIONS[name];
    const inline = long ? long.includes("=") : arg.length > 2;
    i += spec?.type === "string" && !inline ? 2 : 1;
  }
  return i;
}

function report(context: CommandContext, err: unknown): number {
  if (err instanceof UsageError) {
    context.warn(`blobstore: ${err.message}`);
    context.warn("Run 'blobstore --help' for usage.");
    return 2;
  }
  if (err instanceof Deno.errors.BrokenPipe) return 141; // like SIGPIPE
  // The store's errors (not found, mismatches, conflicts) and the file
  // system's say what went wrong in their message: show just that.
  context.warn(`blobstore: ${err instanceof Error ? err.message : err}`);
  return 1;
}
