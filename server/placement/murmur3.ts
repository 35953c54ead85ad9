// MurmurHash3, x86 32-bit variant (Austin Appleby's MurmurHash3_x86_32), over raw bytes.
//
// Why our own: the npm ports we looked at hash UTF-16 code units (`charCodeAt(i) & 0xff`), so
// non-ASCII keys collide and disagree with every other implementation. Hashing the UTF-8 bytes makes
// a keyspace id reproducible from Postgres, Go, Python, ... given the same key text.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** MurmurHash3 x86 32-bit of `bytes` (its first `length`); returns an unsigned 32-bit integer. */
export function murmur3(bytes: Uint8Array, seed = 0, length = bytes.length): number {
  const blockEnd = length & ~3;
  let h = seed >>> 0;

  // Body: little-endian 4-byte blocks.
  for (let i = 0; i < blockEnd; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }

  // Tail: the last 1..3 bytes (the C reference falls through the switch cases).
  let k = 0;
  switch (length & 3) {
    case 3:
      k ^= bytes[blockEnd + 2] << 16;
    // falls through
    case 2:
      k ^= bytes[blockEnd + 1] << 8;
    // falls through
    case 1:
      k ^= bytes[blockEnd];
      k = Math.imul(k, C1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, C2);
      h ^= k;
  }

  // Finalization: mix in the length, then avalanche (fmix32).
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const utf8 = new TextEncoder();

/**
 * The keyspace id of a shard key: murmur3 (seed 0) of the key's UTF-8 bytes.
 * An integer key is hashed as its decimal text, so 42 and "42" share a keyspace id.
 */
export function keyspaceId(key: string): number {
  // Keys are short: encoded into one reused buffer, not a new array per key (placement is on every
  // request's path). A key that does not fit is encoded on its own.
  if (key.length <= scratch.length / 3) {
    const { written } = utf8.encodeInto(key, scratch);
    return murmur3(scratch, 0, written);
  }
  return murmur3(utf8.encode(key), 0);
}

const scratch = new Uint8Array(3 * 256);
