/**
 * The form in which an upload's running hash state is kept in a catalog:
 * the resumable SHA-384's state followed by a check of it.
 *
 * A state changed in storage would resume without complaint and give a
 * wrong whole hash (hash-wasm checks only its own build's tag): the check
 * makes such a state unusable instead, and the store then reads the parts
 * back, so a damaged catalog costs time, never a wrong hash.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { STATE_SIZE } from "./resumable_sha384.ts";

/** The bytes of the check: the first 16 of the state's SHA-256. */
const CHECK_SIZE = 16;

function check(state: Uint8Array): Uint8Array {
  return createHash("sha256").update(state).digest().subarray(0, CHECK_SIZE);
}

/** `state` with its check appended, to be kept in a catalog. */
export function sealState(state: Uint8Array): Uint8Array {
  const sealed = new Uint8Array(state.byteLength + CHECK_SIZE);
  sealed.set(state);
  sealed.set(check(state), state.byteLength);
  return sealed;
}

/**
 * The state inside `sealed`, or `undefined` when it is not one sealed by
 * {@linkcode sealState} (another length, a check that does not match).
 */
export function openState(sealed: unknown): Uint8Array | undefined {
  if (
    !(sealed instanceof Uint8Array) ||
    sealed.byteLength !== STATE_SIZE + CHECK_SIZE
  ) {
    return undefined;
  }
  const state = sealed.subarray(0, STATE_SIZE);
  const expected = check(state);
  const got = sealed.subarray(STATE_SIZE);
  return expected.every((byte, i) => byte === got[i]) ? state : undefined;
}
