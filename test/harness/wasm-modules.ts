// Wasm modules of any size for tests: a built filter with a custom section appended is another module (another
// sha256) that behaves the same; V8 skips custom sections, so padding costs transfer and memory, not compilation.

/** `bytes` with a custom section named `skiff-variant` holding `tag`, padded to at least `size` bytes. */
export function moduleVariant(bytes: Uint8Array, tag: string, size = 0): Uint8Array {
  const name = Buffer.from("skiff-variant");
  const padding = Buffer.alloc(Math.max(0, size - bytes.length), tag);
  const payload = Buffer.concat([leb128(name.length), name, Buffer.from(tag), padding]);
  return Buffer.concat([bytes, Buffer.from([0]), leb128(payload.length), payload]);
}

function leb128(value: number): Buffer {
  const out: number[] = [];
  do {
    const low = value & 0x7f;
    value >>>= 7;
    out.push(value ? low | 0x80 : low);
  } while (value);
  return Buffer.from(out);
}

export const MiB = 1024 * 1024;
