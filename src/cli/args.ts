/**
 * A small command-line parser: `--name value`, `--name=value`, `-n value`,
 * boolean flags, `--` to end options. Anything unexpected is a
 * {@linkcode UsageError}, which the CLI answers with exit code 2.
 *
 * @module
 */

import { isValidHash } from "../digest.ts";

/**
 * A mistake in how the command was called: unknown option, missing value,
 * wrong number of arguments.
 */
export class UsageError extends Error {
  /** Creates the error; the message is shown to the user as is. */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * The options a command accepts, by long name.
 */
export type OptionSpecs = Record<
  string,
  { type: "string" | "boolean"; short?: string }
>;

/**
 * The parsed command line: positionals in order, options by long name.
 */
export interface ParsedArgs {
  /** The arguments that are not options. */
  positionals: string[];
  /** The options given: a string for valued ones, `true` for flags. */
  options: Record<string, string | boolean | undefined>;
}

/**
 * Parses `args` against `specs`. Options may appear anywhere before `--`;
 * a later occurrence of an option overrides an earlier one.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { parseArgs } from "./args.ts";
 *
 * const { positionals, options } = parseArgs(
 *   ["get", "-o", "out.bin", "--range=0-99", "HASH"],
 *   { output: { type: "string", short: "o" }, range: { type: "string" } },
 * );
 * assert(positionals.join(" ") === "get HASH");
 * assert(options.output === "out.bin" && options.range === "0-99");
 * ```
 */
export function parseArgs(args: string[], specs: OptionSpecs): ParsedArgs {
  const shorts = new Map(
    Object.entries(specs).flatMap(([name, spec]) =>
      spec.short ? [[spec.short, name] as const] : []
    ),
  );
  const positionals: string[] = [];
  const options: ParsedArgs["options"] = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg === "-" || !arg.startsWith("-")) {
      positionals.push(arg);
      continue;
    }
    const long = arg.startsWith("--");
    const eq = arg.indexOf("=");
    const key = long
      ? arg.slice(2, eq === -1 ? undefined : eq)
      : arg.slice(1, 2);
    const name = long ? key : shorts.get(key);
    const spec = name === undefined ? undefined : specs[name];
    if (name === undefined || !spec) {
      throw new UsageError(`unknown option ${long ? `--${key}` : `-${key}`}`);
    }
    let inline: string | undefined;
    if (long && eq !== -1) inline = arg.slice(eq + 1);
    else if (!long && arg.length > 2) inline = arg.slice(2);
    if (spec.type === "boolean") {
      if (inline !== undefined) {
        throw new UsageError(`option --${name} takes no value`);
      }
      options[name] = true;
      continue;
    }
    if (inline === undefined) {
      if (i + 1 >= args.length) {
        throw new UsageError(`option --${name} needs a value`);
      }
      inline = args[++i];
    }
    options[name] = inline;
  }
  return { positionals, options };
}

/**
 * The one positional argument a command takes, or a {@linkcode UsageError}
 * naming what was expected (`what`, e.g. `"FILE"`) and how many were given.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { onlyPositional } from "./args.ts";
 *
 * assert.strictEqual(onlyPositional("upload", "FILE", ["a.iso"]), "a.iso");
 * assert.throws(() => onlyPositional("upload", "FILE", []), /exactly one FILE/);
 * ```
 */
export function onlyPositional(
  command: string,
  what: string,
  positionals: string[],
): string {
  if (positionals.length !== 1) {
    throw new UsageError(
      `${command} needs exactly one ${what} (got ${positionals.length})`,
    );
  }
  return positionals[0];
}

/**
 * The one positional argument of a command that takes a blob's hash, or a
 * {@linkcode UsageError} saying what a hash looks like and what was got.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { hashArgument } from "./args.ts";
 *
 * assert.throws(() => hashArgument("get", ["abc"]), /96 lowercase hex/);
 * assert.throws(() => hashArgument("get", []), /exactly one HASH/);
 * ```
 */
export function hashArgument(command: string, positionals: string[]): string {
  const hash = onlyPositional(command, "HASH", positionals);
  if (!isValidHash(hash)) {
    throw new UsageError(
      `invalid HASH ${
        JSON.stringify(hash)
      } (expected 96 lowercase hex characters)`,
    );
  }
  return hash;
}
