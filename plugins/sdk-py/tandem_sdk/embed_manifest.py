"""Embeds a plugin manifest (`tandem.toml`) into a component as the `tandem-manifest`
custom section, where the host looks for it (a pinned plugin's manifest must be the one
inside the pinned file)::

    python tandem_sdk/embed_manifest.py connector.wasm tandem.toml

A custom section may follow the other sections of a component, so this appends one; a
component that already has the section is refused rather than given two.
"""

import sys

SECTION = b"tandem-manifest"


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_leb(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def has_section(wasm: bytes, name: bytes = SECTION) -> bool:
    """Whether a top-level custom section of this name exists."""
    at = 8
    while at < len(wasm):
        section_id = wasm[at]
        size, start = _read_leb(wasm, at + 1)
        if section_id == 0:
            length, name_at = _read_leb(wasm, start)
            if wasm[name_at : name_at + length] == name:
                return True
        at = start + size
    return False


def embed(wasm: bytes, manifest: bytes) -> bytes:
    """The component with the manifest appended as a custom section."""
    # `\0asm`, then version 0x0d and layer 0x01: a component (a core module has layer 0).
    if len(wasm) < 8 or wasm[:4] != b"\0asm" or wasm[6] != 1:
        raise ValueError("not a WebAssembly component")
    if has_section(wasm):
        raise ValueError("it already has a tandem-manifest section; build it afresh")
    payload = _leb128(len(SECTION)) + SECTION + manifest
    return wasm + b"\0" + _leb128(len(payload)) + payload


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python embed_manifest.py <component.wasm> <tandem.toml>", file=sys.stderr)
        return 2
    wasm_path, manifest_path = argv
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    with open(manifest_path, "rb") as f:
        manifest = f.read()
    try:
        out = embed(wasm, manifest)
    except ValueError as e:
        print(f"{wasm_path}: {e}", file=sys.stderr)
        return 1
    with open(wasm_path, "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
