import assert from "node:assert";
import { HttpError } from "../http/errors.ts";
import {
  checkTusResumable,
  headerCount,
  httpDate,
  isOffsetOctetStream,
  requiredCount,
  TUS_VERSION,
} from "./headers.ts";

const req = (headers: Record<string, string>) =>
  new Request("http://x/", { headers });

Deno.test("tus headers: Tus-Resumable must be 1.0.0, else 412 with Tus-Version", () => {
  checkTusResumable(req({ "tus-resumable": "1.0.0" }));
  checkTusResumable(req({ "tus-resumable": " 1.0.0 " }));
  for (const value of [undefined, "", "0.2.2", "1.0", "1.0.0,0.2.2", "1"]) {
    assert.throws(
      () =>
        checkTusResumable(
          req(value === undefined ? {} : { "tus-resumable": value }),
        ),
      (err) =>
        err instanceof HttpError && err.status === 412 &&
        new Headers(err.headers).get("tus-version") === TUS_VERSION &&
        /expected Tus-Resumable: 1\.0\.0, got/.test(err.message),
      String(value),
    );
  }
});

Deno.test("tus headers: counts are digits only, within 2^53 - 1", () => {
  assert.strictEqual(
    headerCount(req({ "upload-offset": "0" }), "Upload-Offset"),
    0,
  );
  assert.strictEqual(
    headerCount(req({ "upload-length": "9007199254740991" }), "Upload-Length"),
    Number.MAX_SAFE_INTEGER,
  );
  assert.strictEqual(headerCount(req({}), "Upload-Length"), undefined);
  for (
    const value of [
      "",
      "-1",
      "-0",
      "1.5",
      "1e3",
      "0x10",
      "+5",
      "5, 5",
      "abc",
      "9007199254740992",
      "99999999999999999999",
      "\u00b2",
    ]
  ) {
    assert.throws(
      () => headerCount(req({ "upload-length": value }), "Upload-Length"),
      (err) =>
        err instanceof HttpError && err.status === 400 &&
        err.message.startsWith(
          "invalid Upload-Length (expected a non-negative integer",
        ),
      value,
    );
  }
  assert.throws(
    () => requiredCount(req({}), "Upload-Offset"),
    (err) => err instanceof HttpError && err.status === 400,
  );
});

Deno.test("tus headers: the offset media type and HTTP dates", () => {
  assert(isOffsetOctetStream("application/offset+octet-stream"));
  assert(isOffsetOctetStream(" APPLICATION/offset+octet-stream ;charset=x"));
  for (
    const value of [
      null,
      "",
      "application/octet-stream",
      "text/plain",
      "application/offset+octet-streams",
    ]
  ) {
    assert(!isOffsetOctetStream(value), String(value));
  }
  const date = new Date(Date.UTC(1994, 10, 6, 8, 49, 37));
  assert.strictEqual(httpDate(date), "Sun, 06 Nov 1994 08:49:37 GMT");
});
