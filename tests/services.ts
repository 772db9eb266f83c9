/**
 * How test suites find the real services they need (FerretDB/MongoDB,
 * Swift, Keystone), and what they do when one is missing: fail loudly in CI
 * (`CI=true`), skip with a clear message on a laptop.
 *
 * `deno task test` starts the services through `scripts/` first; the
 * addresses below are theirs, always on 127.0.0.1.
 *
 * @module
 */

/** Whether we run in CI, where a missing service is a failure, not a skip. */
export const IN_CI = Deno.env.get("CI") === "true";

/** The MongoDB-protocol server for tests (FerretDB started by scripts/ferretdb.sh). */
export const MONGODB_URL = Deno.env.get("MONGODB_URL") ??
  "mongodb://127.0.0.1:27117/";

/**
 * Probes a service once. Returns `true` when `probe` succeeds. When it
 * fails, throws in CI (so the whole run fails) and otherwise prints why the
 * suite is skipped and returns `false`; use the result as `ignore: !ok`.
 */
export async function serviceAvailable(
  name: string,
  probe: () => Promise<void>,
): Promise<boolean> {
  try {
    await probe();
    return true;
  } catch (err) {
    const why = `${name} is not reachable: ${
      err instanceof Error ? err.message : String(err)
    }`;
    if (IN_CI) throw new Error(`${why} (CI=true: suites never skip in CI)`);
    console.error(
      `%cskipping ${name} suites: ${why}. Run \`deno task test\` to start it.`,
      "color: yellow",
    );
    return false;
  }
}

/**
 * Swift's S3 API (s3api, path-style `${S3_ENDPOINT}/BUCKET/KEY`, SigV4) and
 * its TempURLs, served by the third proxy scripts/swift.sh starts. The same
 * origin also answers Swift v1 auth ({@linkcode S3_SWIFT_AUTH_URL}), e.g. to
 * set `X-Account-Meta-Temp-URL-Key` on the account for TempURL tests.
 */
export const S3_ENDPOINT = Deno.env.get("S3_ENDPOINT") ??
  "http://127.0.0.1:8395";

/** The S3 access key: tempauth's `account:user`. */
export const S3_ACCESS_KEY = "test:tester";

/** The S3 secret key: tempauth's key for {@linkcode S3_ACCESS_KEY}. */
export const S3_SECRET_KEY = "testing";

/** The region of the SigV4 scope (s3api's `location`). */
export const S3_REGION = "us-east-1";

/** Swift v1 auth on the S3 proxy (same user and key as the S3 credentials). */
export const S3_SWIFT_AUTH_URL = `${S3_ENDPOINT.replace(/\/+$/, "")}/auth/v1.0`;

/**
 * {@linkcode serviceAvailable} for the S3/TempURL proxy: probes
 * `GET ${S3_ENDPOINT}/healthcheck` (answered "OK" once its pipeline,
 * s3api and tempurl included, is loaded). Use as `ignore: !ok`.
 */
export function s3Available(): Promise<boolean> {
  return serviceAvailable(`Swift S3 API at ${S3_ENDPOINT}`, async () => {
    const res = await fetch(
      `${S3_ENDPOINT.replace(/\/+$/, "")}/healthcheck`,
      { signal: AbortSignal.timeout(5000) },
    );
    const body = (await res.text()).trim();
    if (!res.ok || body !== "OK") {
      throw new Error(
        `GET /healthcheck: HTTP ${res.status} ${body.slice(0, 80)}`,
      );
    }
  });
}
