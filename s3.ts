/**
 * S3-compatible storage for the blob store: AWS S3, Cloudflare R2, MinIO,
 * Ceph RGW, Wasabi, Backblaze B2, OpenStack Swift's S3 API. Requests go
 * over `fetch` (and `node:http` for streamed puts where the runtime has
 * it), signed with AWS Signature Version 4 by a small signer of our own
 * ({@linkcode signRequest}, {@linkcode presignUrl}).
 *
 * @example
 * ```ts ignore
 * import { Store } from "@blobstore/blobstore";
 * import { KvCatalog } from "@blobstore/blobstore/kv";
 * import { S3Backend } from "@blobstore/blobstore/s3";
 *
 * const backend = new S3Backend({
 *   endpoint: "https://s3.us-east-1.amazonaws.com",
 *   region: "us-east-1",
 *   bucket: "my-blobs",
 *   accessKeyId: Deno.env.get("AWS_ACCESS_KEY_ID")!,
 *   secretAccessKey: Deno.env.get("AWS_SECRET_ACCESS_KEY")!,
 * });
 * const store = new Store({ catalog: new KvCatalog(await Deno.openKv()), backend });
 * ```
 *
 * @module
 */

export { S3Backend } from "./src/s3/backend.ts";
export { S3Error } from "./src/s3/error.ts";
export {
  DEFAULT_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  type S3Params,
} from "./src/s3/params.ts";
export {
  presignUrl,
  type PresignUrlOptions,
  type S3Credentials,
  sha256Hex,
  signRequest,
  type SignRequestOptions,
  UNSIGNED_PAYLOAD,
} from "./src/s3/sigv4.ts";
export type { FetchFn } from "./src/request.ts";
