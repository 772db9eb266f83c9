import { deepStrictEqual, ok, rejects, strictEqual } from "node:assert";
import { createHash, createHmac } from "node:crypto";
import {
  EMPTY_SHA256,
  presignUrl,
  type S3Credentials,
  sha256Hex,
  signRequest,
  UNSIGNED_PAYLOAD,
} from "./sigv4.ts";

// The examples of the S3 API Reference, "Signature Calculations for the
// Authorization Header: Transferring Payload in a Single Chunk (AWS Signature
// Version 4)" (sig-v4-header-based-auth) and "Authenticating Requests: Using
// Query Parameters (AWS Signature Version 4)" (sigv4-query-string-auth).
const EXAMPLE: S3Credentials = {
  accessKeyId: "AKIAIOSFODNN7EXAMPLE",
  secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
};
const HOST = "https://examplebucket.s3.amazonaws.com";
const NOW = new Date("2013-05-24T00:00:00Z");
const AMZ_DATE = "20130524T000000Z";
const SCOPE = "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request";
const WELCOME_SHA256 =
  "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";

/**
 * Each example as the document prints it: the canonical request, the hash
 * ending its StringToSign, the signature.
 */
const DOCUMENTED = {
  getObject: {
    canonical: [
      "GET",
      "/test.txt",
      "",
      "host:examplebucket.s3.amazonaws.com",
      "range:bytes=0-9",
      `x-amz-content-sha256:${EMPTY_SHA256}`,
      "x-amz-date:20130524T000000Z",
      "",
      "host;range;x-amz-content-sha256;x-amz-date",
      EMPTY_SHA256,
    ].join("\n"),
    hash: "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972",
    signature:
      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
  },
  putObject: {
    canonical: [
      "PUT",
      "/test%24file.text",
      "",
      "date:Fri, 24 May 2013 00:00:00 GMT",
      "host:examplebucket.s3.amazonaws.com",
      `x-amz-content-sha256:${WELCOME_SHA256}`,
      "x-amz-date:20130524T000000Z",
      "x-amz-storage-class:REDUCED_REDUNDANCY",
      "",
      "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
      WELCOME_SHA256,
    ].join("\n"),
    hash: "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d",
    signature:
      "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
  },
  getBucketLifecycle: {
    canonical: [
      "GET",
      "/",
      "lifecycle=",
      "host:examplebucket.s3.amazonaws.com",
      `x-amz-content-sha256:${EMPTY_SHA256}`,
      "x-amz-date:20130524T000000Z",
      "",
      "host;x-amz-content-sha256;x-amz-date",
      EMPTY_SHA256,
    ].join("\n"),
    hash: "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf79c77395ca",
    signature:
      "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
  },
  listObjects: {
    canonical: [
      "GET",
      "/",
      "max-keys=2&prefix=J",
      "host:examplebucket.s3.amazonaws.com",
      `x-amz-content-sha256:${EMPTY_SHA256}`,
      "x-amz-date:20130524T000000Z",
      "",
      "host;x-amz-content-sha256;x-amz-date",
      EMPTY_SHA256,
    ].join("\n"),
    hash: "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7",
    signature:
      "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
  },
  presigned: {
    canonical: [
      "GET",
      "/test.txt",
      "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host",
      "host:examplebucket.s3.amazonaws.com",
      "",
      "host",
      "UNSIGNED-PAYLOAD",
    ].join("\n"),
    hash: "3bfa292879f6447bbcda7001decf97f4a54dc650c8942174ae0a9121cf58ad04",
    signature:
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
  },
};

/**
 * The signature of a canonical request written out by hand, computed with
 * `node:crypto` rather than Web Crypto: an independent check of what the
 * signer builds, pinned to the documented examples by the first test.
 */
function referenceSignature(
  canonicalRequest: string,
  {
    amzDate = AMZ_DATE,
    region = "us-east-1",
    service = "s3",
    secret = EXAMPLE.secretAccessKey,
  } = {},
): string {
  const day = amzDate.slice(0, 8);
  const stringToSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    `${day}/${region}/${service}/aws4_request`,
    createHash("sha256").update(canonicalRequest).digest("hex"),
  ].join("\n");
  let key: string | Uint8Array = `AWS4${secret}`;
  for (const part of [day, region, service, "aws4_request"]) {
    key = createHmac("sha256", key).update(part).digest();
  }
  return createHmac("sha256", key).update(stringToSign).digest("hex");
}

function parseAuthorization(
  headers: Headers,
): { signedHeaders: string; signature: string } {
  const match =
    /^AWS4-HMAC-SHA256 Credential=[^,]+,SignedHeaders=([^,]+),Signature=([0-9a-f]{64})$/
      .exec(headers.get("authorization") ?? "");
  ok(match, `unexpected authorization ${headers.get("authorization")}`);
  return { signedHeaders: match[1], signature: match[2] };
}

/** Signs a GET with the example credentials and clock, unsigned payload unless told. */
function sign(
  url: string,
  options: Partial<Parameters<typeof signRequest>[0]> = {},
) {
  return signRequest({
    method: "GET",
    url: new URL(url),
    credentials: EXAMPLE,
    region: "us-east-1",
    now: NOW,
    ...options,
  });
}

/** The canonical request of a GET with no headers but the host and the signer's own. */
function canonicalGet(
  path: string,
  query: string,
  host: string,
  payload = UNSIGNED_PAYLOAD,
) {
  return [
    "GET",
    path,
    query,
    `host:${host}`,
    `x-amz-content-sha256:${payload}`,
    `x-amz-date:${AMZ_DATE}`,
    "",
    "host;x-amz-content-sha256;x-amz-date",
    payload,
  ].join("\n");
}

Deno.test("the documented canonical requests hash and sign to what the documents print", () => {
  for (const [name, example] of Object.entries(DOCUMENTED)) {
    strictEqual(
      createHash("sha256").update(example.canonical).digest("hex"),
      example.hash,
      name,
    );
    strictEqual(referenceSignature(example.canonical), example.signature, name);
  }
});

Deno.test("signRequest: AWS example GET Object (Range header)", async () => {
  const headers = await sign(`${HOST}/test.txt`, {
    headers: { Range: "bytes=0-9" },
    payloadHash: EMPTY_SHA256,
  });
  strictEqual(
    headers.get("authorization"),
    `AWS4-HMAC-SHA256 Credential=${SCOPE},SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=${DOCUMENTED.getObject.signature}`,
  );
  strictEqual(headers.get("x-amz-date"), AMZ_DATE);
  strictEqual(headers.get("x-amz-content-sha256"), EMPTY_SHA256);
  strictEqual(headers.get("range"), "bytes=0-9");
  strictEqual(
    headers.get("host"),
    null,
    "fetch and node:http set the host themselves",
  );
  strictEqual(headers.get("x-amz-security-token"), null);
});

Deno.test("signRequest: AWS example PUT Object (Date and x-amz-storage-class headers, $ in the key)", async () => {
  const payloadHash = await sha256Hex("Welcome to Amazon S3.");
  strictEqual(payloadHash, WELCOME_SHA256);
  const expected =
    `AWS4-HMAC-SHA256 Credential=${SCOPE},SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=${DOCUMENTED.putObject.signature}`;
  // The key as typed and as already encoded: encoded once either way.
  for (const path of ["/test$file.text", "/test%24file.text"]) {
    const headers = await sign(`${HOST}${path}`, {
      method: "PUT",
      headers: {
        Date: "Fri, 24 May 2013 00:00:00 GMT",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
      },
      payloadHash,
    });
    strictEqual(headers.get("authorization"), expected, path);
    strictEqual(headers.get("x-amz-content-sha256"), WELCOME_SHA256);
  }
});

Deno.test("signRequest: AWS example GET Bucket Lifecycle (?lifecycle)", async () => {
  const expected =
    `AWS4-HMAC-SHA256 Credential=${SCOPE},SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=${DOCUMENTED.getBucketLifecycle.signature}`;
  for (const query of ["?lifecycle", "?lifecycle="]) {
    const headers = await sign(`${HOST}/${query}`, {
      payloadHash: EMPTY_SHA256,
    });
    strictEqual(headers.get("authorization"), expected, query);
  }
});

Deno.test("signRequest: AWS example Get Bucket (List Objects), in either parameter order", async () => {
  const expected =
    `AWS4-HMAC-SHA256 Credential=${SCOPE},SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=${DOCUMENTED.listObjects.signature}`;
  for (const query of ["?max-keys=2&prefix=J", "?prefix=J&max-keys=2"]) {
    const headers = await sign(`${HOST}/${query}`, {
      payloadHash: EMPTY_SHA256,
    });
    strictEqual(headers.get("authorization"), expected, query);
  }
});

Deno.test("presignUrl: AWS example presigned GET (expires 86400)", async () => {
  const url = await presignUrl({
    url: new URL(`${HOST}/test.txt`),
    credentials: EXAMPLE,
    region: "us-east-1",
    expiresIn: 86400,
    now: NOW,
  });
  strictEqual(
    url.href,
    `${HOST}/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=${DOCUMENTED.presigned.signature}`,
  );
});

Deno.test("signRequest: query values encoded per RFC 3986 (space %20, ~ kept, + and / escaped), sorted", async () => {
  const url = new URL("http://127.0.0.1:9000/bucket");
  // URLSearchParams writes a space as + and escapes ~, + and / itself.
  url.searchParams.set("prefix", "a b+c/d~é");
  url.searchParams.set("delimiter", "/");
  url.searchParams.set("list-type", "2");
  url.searchParams.append("x", "!'()*");
  ok(url.search.includes("prefix=a+b%2Bc%2Fd%7E%C3%A9"), url.search);
  const headers = await sign(url.href);
  const query =
    "delimiter=%2F&list-type=2&prefix=a%20b%2Bc%2Fd~%C3%A9&x=%21%27%28%29%2A";
  strictEqual(
    parseAuthorization(headers).signature,
    referenceSignature(canonicalGet("/bucket", query, "127.0.0.1:9000")),
  );
  // The same query written by hand: a raw ~, %20 for the space, lowercase escapes.
  const byHand = await sign(
    "http://127.0.0.1:9000/bucket?x=!'()*&prefix=a%20b%2bc%2fd~%c3%a9&list-type=2&delimiter=/",
  );
  strictEqual(byHand.get("authorization"), headers.get("authorization"));
});

Deno.test("signRequest: equal names are ordered by value, and a name alone signs as name=", async () => {
  const headers = await sign("https://h.example/b?tag=b&uploads&tag=a");
  strictEqual(
    parseAuthorization(headers).signature,
    referenceSignature(canonicalGet("/b", "tag=a&tag=b&uploads=", "h.example")),
  );
});

Deno.test("signRequest: path segments encoded once (spaces, unicode, +, %2F in a key), slashes kept", async () => {
  const typed = await sign("https://h.example/bucket/my dir//a+b é (1).txt");
  const path = "/bucket/my%20dir//a%2Bb%20%C3%A9%20%281%29.txt";
  strictEqual(
    parseAuthorization(typed).signature,
    referenceSignature(canonicalGet(path, "", "h.example")),
  );
  const encoded = await sign(`https://h.example${path}`);
  strictEqual(encoded.get("authorization"), typed.get("authorization"));

  const slashInKey = await sign("https://h.example/bucket/a%2Fb");
  strictEqual(
    parseAuthorization(slashInKey).signature,
    referenceSignature(canonicalGet("/bucket/a%2Fb", "", "h.example")),
  );
});

Deno.test("signRequest: the host carries a port only when it is not the scheme's default", async () => {
  const cases: [string, string][] = [
    ["http://localhost:9000/b/k", "localhost:9000"],
    ["https://h.example:8443/b/k", "h.example:8443"],
    ["https://h.example:443/b/k", "h.example"],
    ["http://h.example:80/b/k", "h.example"],
  ];
  for (const [url, host] of cases) {
    const headers = await sign(url);
    strictEqual(
      parseAuthorization(headers).signature,
      referenceSignature(canonicalGet("/b/k", "", host)),
      url,
    );
  }
  // A host header given is what gets signed.
  const given = await sign("http://127.0.0.1:9000/b/k", {
    headers: { Host: "s3.local:9000" },
  });
  strictEqual(
    parseAuthorization(given).signature,
    referenceSignature(canonicalGet("/b/k", "", "s3.local:9000")),
  );
});

Deno.test("signRequest: a session token is sent as x-amz-security-token and signed", async () => {
  const credentials = {
    ...EXAMPLE,
    sessionToken: "FQoGZXIvYXdzE+token/with=chars",
  };
  const headers = await sign("https://h.example/b/k", { credentials });
  strictEqual(headers.get("x-amz-security-token"), credentials.sessionToken);
  const { signedHeaders, signature } = parseAuthorization(headers);
  strictEqual(
    signedHeaders,
    "host;x-amz-content-sha256;x-amz-date;x-amz-security-token",
  );
  strictEqual(
    signature,
    referenceSignature(
      [
        "GET",
        "/b/k",
        "",
        "host:h.example",
        "x-amz-content-sha256:UNSIGNED-PAYLOAD",
        `x-amz-date:${AMZ_DATE}`,
        `x-amz-security-token:${credentials.sessionToken}`,
        "",
        signedHeaders,
        "UNSIGNED-PAYLOAD",
      ].join("\n"),
    ),
  );
});

Deno.test("signRequest: every header given is signed, values trimmed and collapsed; hop-by-hop ones are sent unsigned", async () => {
  const headers = await sign("https://h.example/b/k", {
    method: "put",
    headers: {
      "Content-Length": "3",
      "Content-Type": "text/plain",
      "Content-MD5": "rL0Y20zC+Fzt72VPzMSk2A==",
      "X-Amz-Meta-Note": "  two   spaces\tand a tab  ",
      "User-Agent": "blobstore",
      Connection: "keep-alive",
      Authorization: "stale",
    },
    payloadHash: await sha256Hex(new Uint8Array([1, 2, 3])),
  });
  const payload = createHash("sha256").update(new Uint8Array([1, 2, 3])).digest(
    "hex",
  );
  const { signedHeaders, signature } = parseAuthorization(headers);
  strictEqual(
    signedHeaders,
    "content-length;content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-note",
  );
  strictEqual(
    signature,
    referenceSignature(
      [
        "PUT",
        "/b/k",
        "",
        "content-length:3",
        "content-md5:rL0Y20zC+Fzt72VPzMSk2A==",
        "content-type:text/plain",
        "host:h.example",
        `x-amz-content-sha256:${payload}`,
        `x-amz-date:${AMZ_DATE}`,
        "x-amz-meta-note:two spaces and a tab",
        "",
        signedHeaders,
        payload,
      ].join("\n"),
    ),
  );
  strictEqual(headers.get("user-agent"), "blobstore");
  strictEqual(headers.get("connection"), "keep-alive");
});

Deno.test("signRequest: the caller's headers are left as they were", async () => {
  const record = { Range: "bytes=0-9", "x-amz-date": "19700101T000000Z" };
  const recordBefore = structuredClone(record);
  const headersObject = new Headers({ range: "bytes=0-9" });
  await sign(`${HOST}/test.txt`, {
    headers: record,
    payloadHash: EMPTY_SHA256,
  });
  const fromHeaders = await sign(`${HOST}/test.txt`, {
    headers: headersObject,
    payloadHash: EMPTY_SHA256,
  });
  deepStrictEqual(record, recordBefore);
  deepStrictEqual([...headersObject], [["range", "bytes=0-9"]]);
  ok(fromHeaders !== headersObject);
  strictEqual(
    parseAuthorization(fromHeaders).signature,
    DOCUMENTED.getObject.signature,
  );
});

Deno.test("signRequest: signing twice, or with the cached key, gives the same signature", async () => {
  const first = await sign(`${HOST}/test.txt`, {
    headers: { Range: "bytes=0-9" },
    payloadHash: EMPTY_SHA256,
  });
  const [second, third] = await Promise.all([
    sign(`${HOST}/test.txt`, {
      headers: { Range: "bytes=0-9" },
      payloadHash: EMPTY_SHA256,
    }),
    sign(`${HOST}/test.txt`, {
      headers: { Range: "bytes=0-9" },
      payloadHash: EMPTY_SHA256,
    }),
  ]);
  strictEqual(second.get("authorization"), first.get("authorization"));
  strictEqual(third.get("authorization"), first.get("authorization"));
  const otherDay = await sign(`${HOST}/test.txt`, {
    headers: { Range: "bytes=0-9" },
    payloadHash: EMPTY_SHA256,
    now: new Date("2013-05-25T00:00:00Z"),
  });
  ok(otherDay.get("authorization") !== first.get("authorization"));
});

Deno.test("presignUrl: signed headers, a session token and the URL's own query enter the signature", async () => {
  const credentials = { ...EXAMPLE, sessionToken: "tok+en/=" };
  const url = await presignUrl({
    url: new URL(
      "http://127.0.0.1:9000/bucket/my key?response-content-type=text/plain",
    ),
    credentials,
    region: "eu-west-1",
    expiresIn: 60,
    now: NOW,
    signedHeaders: { Range: "bytes=0-9" },
  });
  const signature = url.searchParams.get("X-Amz-Signature");
  strictEqual(url.searchParams.get("X-Amz-SignedHeaders"), "host;range");
  strictEqual(
    url.searchParams.get("X-Amz-Security-Token"),
    credentials.sessionToken,
  );
  strictEqual(url.searchParams.get("response-content-type"), "text/plain");
  strictEqual(url.pathname, "/bucket/my%20key");
  const query = [
    "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    "X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Feu-west-1%2Fs3%2Faws4_request",
    "X-Amz-Date=20130524T000000Z",
    "X-Amz-Expires=60",
    "X-Amz-Security-Token=tok%2Ben%2F%3D",
    "X-Amz-SignedHeaders=host%3Brange",
    "response-content-type=text%2Fplain",
  ].join("&");
  strictEqual(url.search, `?${query}&X-Amz-Signature=${signature}`);
  strictEqual(
    signature,
    referenceSignature(
      [
        "GET",
        "/bucket/my%20key",
        query,
        "host:127.0.0.1:9000",
        "range:bytes=0-9",
        "",
        "host;range",
        "UNSIGNED-PAYLOAD",
      ].join("\n"),
      { region: "eu-west-1" },
    ),
  );
});

Deno.test("presignUrl: expiresIn is a whole number of seconds from 1 to 604800", async () => {
  const presign = (expiresIn: number) =>
    presignUrl({
      url: new URL(`${HOST}/test.txt`),
      credentials: EXAMPLE,
      region: "us-east-1",
      expiresIn,
      now: NOW,
    });
  for (const bad of [0, -1, 604801, 1.5, Number.NaN, Infinity]) {
    await rejects(presign(bad), (err: Error) => {
      ok(err instanceof RangeError, String(err));
      ok(err.message.includes("expiresIn"), err.message);
      ok(!err.message.includes(EXAMPLE.secretAccessKey));
      return true;
    });
  }
  strictEqual((await presign(1)).searchParams.get("X-Amz-Expires"), "1");
  strictEqual(
    (await presign(604800)).searchParams.get("X-Amz-Expires"),
    "604800",
  );
});

Deno.test("presignUrl: a URL already presigned is refused", async () => {
  const signed = await presignUrl({
    url: new URL(`${HOST}/test.txt`),
    credentials: EXAMPLE,
    region: "us-east-1",
    expiresIn: 60,
    now: NOW,
  });
  await rejects(
    presignUrl({
      url: signed,
      credentials: EXAMPLE,
      region: "us-east-1",
      expiresIn: 60,
    }),
    (err: Error) => {
      ok(
        err instanceof TypeError && /already carries/.test(err.message),
        String(err),
      );
      ok(!err.message.includes(signed.searchParams.get("X-Amz-Signature")!));
      return true;
    },
  );
});

Deno.test("signRequest: bad input is refused without the secret in the message", async () => {
  const secret = EXAMPLE.secretAccessKey;
  const cases: [string, Promise<unknown>][] = [
    ["payloadHash", sign(`${HOST}/k`, { payloadHash: "ABC" })],
    [
      "payloadHash",
      sign(`${HOST}/k`, { payloadHash: EMPTY_SHA256.toUpperCase() }),
    ],
    ["region", sign(`${HOST}/k`, { region: "us/east" })],
    ["service", sign(`${HOST}/k`, { service: "" })],
    ["method", sign(`${HOST}/k`, { method: "GET /" })],
    ["url", sign("ftp://h.example/k")],
    [
      "secretAccessKey",
      sign(`${HOST}/k`, { credentials: { ...EXAMPLE, secretAccessKey: "" } }),
    ],
    ["now", sign(`${HOST}/k`, { now: new Date(Number.NaN) })],
  ];
  for (const [what, promise] of cases) {
    await rejects(promise, (err: Error) => {
      ok(err.message.includes(what), `${what}: ${err.message}`);
      ok(!err.message.includes(secret), err.message);
      return true;
    });
  }
});

Deno.test("sha256Hex: strings, bytes and views over part of a buffer", async () => {
  strictEqual(await sha256Hex(""), EMPTY_SHA256);
  strictEqual(await sha256Hex(new Uint8Array()), EMPTY_SHA256);
  const bytes = new TextEncoder().encode("xxWelcome to Amazon S3.yy");
  strictEqual(
    await sha256Hex(bytes.subarray(2, bytes.length - 2)),
    WELCOME_SHA256,
  );
  strictEqual(await sha256Hex(bytes.slice(2, -2).buffer), WELCOME_SHA256);
});
