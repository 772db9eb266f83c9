/**
 * Private server instances for the fault-injection suite, which it may
 * kill, freeze and restart without disturbing anyone else's test run: a
 * FerretDB of its own (same binary and flags as `scripts/ferretdb.sh`, its
 * own port and state under `.state/faults/`), and Swift proxies of its own
 * (tempauth, or S3's API through s3api) on their own ports in front of the
 * shared Swift storage servers that `scripts/swift.sh` started. The shared
 * instances are never signalled.
 *
 * @module
 */

const root = new URL("../../", import.meta.url).pathname;

/** Where the suite's private servers keep their state and logs. */
export const FAULTS_STATE = `${root}.state/faults`;

/** The shared Swift's state (rings, rendered configs), from scripts/swift.sh. */
const SWIFT_STATE = `${root}.state/swift`;

/** The shared memcached of scripts/swift.sh (tempauth keeps tokens there). */
const SWIFT_MEMCACHED_PORT = 11311;

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
export async function portAnswers(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function output(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout).trim();
}

/**
 * One server process the suite owns: started from a fixed command line,
 * killed (SIGKILL: a crash) or frozen (SIGSTOP: a hung server) on demand,
 * restarted, and always stopped by {@linkcode OwnedProcess.close}.
 */
export abstract class OwnedProcess {
  #child: Deno.ChildProcess | undefined;
  #log: Deno.FsFile | undefined;
  /** How many times the process was killed or frozen on purpose. */
  faults = 0;

  constructor(
    readonly name: string,
    readonly port: number,
    readonly logPath: string,
  ) {}

  /** The program and its arguments. */
  protected abstract command(): [string, string[]];

  /** Resolves once the server serves requests. */
  protected abstract ready(): Promise<boolean>;

  /** Whether the process runs (not killed; maybe frozen). */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts the process and waits until it serves (30 s at most). */
  async start(): Promise<void> {
    if (this.#child) throw new Error(`${this.name} already runs`);
    const [cmd, args] = this.command();
    this.#log ??= await Deno.open(this.logPath, {
      create: true,
      append: true,
    });
    const child = new Deno.Command(cmd, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    for (const stream of [child.stdout, child.stderr]) {
      stream.pipeTo(
        new WritableStream({ write: (chunk) => void this.#log?.write(chunk) }),
      ).catch(() => {});
    }
    const deadline = Date.now() + 30_000;
    while (!await this.ready()) {
      const exited = await Promise.race([
        child.status.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 100)),
      ]);
      if (exited || Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `${this.name} did not start on 127.0.0.1:${this.port} (log: ${this.logPath})`,
        );
      }
    }
  }

  /** Kills the process at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    this.#child = undefined;
    try {
      child.kill("SIGCONT"); // a frozen process must be able to die
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
  }

  /** Freezes the process (SIGSTOP): connections stay open, nothing answers. */
  freeze(): void {
    this.#child?.kill("SIGSTOP");
  }

  /** Thaws a frozen process (SIGCONT). */
  thaw(): void {
    this.#child?.kill("SIGCONT");
  }

  /** Kills the process, then starts it again. */
  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  /** Stops the process for good. */
  async close(): Promise<void> {
    await this.kill();
    this.#log?.close();
    this.#log = undefined;
  }
}

/** Finds the FerretDB binary scripts/ferretdb.sh installs (Go's bin directory). */
export async function ferretdbBinary(): Promise<string | undefined> {
  try {
    const gobin = await output("go", ["env", "GOBIN"]);
    const dir = gobin || `${await output("go", ["env", "GOPATH"])}/bin`;
    const path = `${dir}/ferretdb`;
    await Deno.stat(path);
    return path;
  } catch {
    return undefined;
  }
}

/**
 * A private FerretDB: the binary and flags of `scripts/ferretdb.sh`, on a
 * free port, data under `.state/faults/<name>/` (kept across restarts,
 * wiped by {@linkcode PrivateFerretDB.create}). `handler` picks SQLite (as
 * the shared one) or PostgreSQL (`postgresURL`).
 */
export class PrivateFerretDB extends OwnedProcess {
  readonly dir: string;

  private constructor(
    readonly binary: string,
    name: string,
    readonly handler: { sqlite: true } | { postgresURL: string },
  ) {
    const dir = `${FAULTS_STATE}/${name}`;
    super(name, freePort(), `${dir}/ferretdb.log`);
    this.dir = dir;
  }

  /** Creates (wiping its state) and starts a private FerretDB. */
  static async create(
    name: string,
    handler: { sqlite: true } | { postgresURL: string } = { sqlite: true },
  ): Promise<PrivateFerretDB> {
    const binary = await ferretdbBinary();
    if (!binary) {
      throw new Error(
        "no FerretDB binary in Go's bin directory (scripts/ferretdb.sh start installs it)",
      );
    }
    const server = new PrivateFerretDB(binary, name, handler);
    await Deno.remove(server.dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(`${server.dir}/data`, { recursive: true });
    await server.start();
    return server;
  }

  /** The connection string. */
  get url(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  protected command(): [string, string[]] {
    const handler = "sqlite" in this.handler
      ? ["--handler=sqlite", `--sqlite-url=file:${this.dir}/data/`]
      : [
        "--handler=postgresql",
        `--postgresql-url=${this.handler.postgresURL}`,
      ];
    return [this.binary, [
      ...handler,
      `--state-dir=${this.dir}`,
      `--listen-addr=127.0.0.1:${this.port}`,
      "--debug-addr=-",
      "--telemetry=disable",
      "--log-level=warn",
    ]];
  }

  protected ready(): Promise<boolean> {
    return portAnswers(this.port);
  }
}

/** Which of the shared Swift's proxy configs a private proxy runs. */
export type SwiftProxyKind = "tempauth" | "s3api";

/**
 * A private Swift proxy, on its own port, in front of the storage servers
 * (and memcached) of the shared Swift from `scripts/swift.sh`: the proxy is
 * what the suite kills and freezes; the objects stay on the shared storage
 * servers. Its config is the shared one with the port changed:
 * `scripts/swift/proxy-tempauth.conf` (Swift's own API, tempauth), or
 * `scripts/swift/proxy-s3api.conf` (Amazon's S3 API through s3api, SigV4
 * with tempauth's users, region us-east-1, path-style; Swift's v1 auth
 * answers there too).
 */
export class PrivateSwiftProxy extends OwnedProcess {
  private constructor(
    readonly kind: SwiftProxyKind,
    readonly config: string,
    port: number,
  ) {
    super(
      kind === "tempauth" ? "swift-proxy" : "s3-proxy",
      port,
      `${FAULTS_STATE}/${
        kind === "tempauth" ? "swift" : "s3"
      }-proxy-${port}.log`,
    );
  }

  /** Renders the config of `kind` and starts the proxy. */
  static async create(
    kind: SwiftProxyKind = "tempauth",
  ): Promise<PrivateSwiftProxy> {
    await Deno.stat(`${SWIFT_STATE}/etc/object.ring.gz`).catch(() => {
      throw new Error(
        "the shared Swift is not configured (scripts/swift.sh start sets it up)",
      );
    });
    await Deno.mkdir(FAULTS_STATE, { recursive: true });
    const port = freePort();
    const user = await output("id", ["-un"]);
    const template = await Deno.readTextFile(
      `${root}scripts/swift/proxy-${kind}.conf`,
    );
    const config = `${FAULTS_STATE}/proxy-${kind}-${port}.conf`;
    await Deno.writeTextFile(
      config,
      template
        .replaceAll("@STATE@", SWIFT_STATE)
        .replaceAll("@USER@", user)
        .replaceAll("@MEMCACHED_PORT@", String(SWIFT_MEMCACHED_PORT))
        .replaceAll(
          kind === "tempauth" ? "@PROXY_PORT@" : "@S3_PORT@",
          String(port),
        )
        .replace(`log_name = proxy-${kind}`, `log_name = proxy-faults-${kind}`),
    );
    const proxy = new PrivateSwiftProxy(kind, config, port);
    await proxy.start();
    return proxy;
  }

  /** The origin of this proxy (the S3 endpoint of an s3api proxy). */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The v1 auth URL of this proxy. */
  get authURL(): string {
    return `${this.endpoint}/auth/v1.0`;
  }

  protected command(): [string, string[]] {
    return ["swift-proxy-server", [this.config, "-v"]];
  }

  protected async ready(): Promise<boolean> {
    try {
      const res = await fetch(`${this.endpoint}/healthcheck`, {
        signal: AbortSignal.timeout(2000),
      });
      const body = await res.text();
      // "OK" once the whole pipeline (s3api included) is loaded
      return res.ok && body.trim() === "OK";
    } catch {
      return false;
    }
  }

  override async close(): Promise<void> {
    await super.close();
    await Deno.remove(this.config).catch(() => {});
  }
}
