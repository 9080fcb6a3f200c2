"""Ed25519 signatures over a bundle's sealed manifest (the ``cryptography`` package does the math).

``edgessl keygen --out KEY`` writes the private key ``KEY`` (PKCS#8 PEM, mode 0600) and the public
key ``KEY.pub`` (SubjectPublicKeyInfo PEM). ``edgessl sign`` writes ``BUNDLE/signature.json``::

    {"algorithm": "ed25519", "key_id": sha256(raw public key)[:16], "manifest_sha256": <bundle hash>,
     "signature": base64(Ed25519(private key, bytes of manifest.json))}

The signature covers ``manifest.json``'s exact bytes; the manifest lists every other file's sha256,
so it covers the whole bundle. Any change through ``update_bundle`` removes the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from .errors import EdgesslError
from .files import write_atomic

SIGNATURE = "signature.json"  # the detached signature record, beside manifest.json


def _serialization():
    from cryptography.hazmat.primitives import serialization

    return serialization


def key_id(public_key) -> str:
    """The first 16 hex digits of the sha256 of the raw 32-byte public key."""
    s = _serialization()
    raw = public_key.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def keygen(out: str | Path) -> tuple[Path, Path, str]:
    """Write a new key pair to ``out`` and ``out.pub`` (never over existing files); returns both and the key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = _serialization()
    private, public = Path(out), Path(f"{out}.pub")
    for p in (private, public):
        if p.exists():
            raise EdgesslError(f"{p} already exists; choose another --out (a key is never overwritten)")
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    write_atomic(public, key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))
    return private, public, key_id(key.public_key())


def _load_key(path: str | Path, private: bool):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    s, p = _serialization(), Path(path)
    what = "private" if private else "public"
    if not p.is_file():
        raise EdgesslError(f"{what} key {p} not found (make a pair with `edgessl keygen --out KEY`)")
    try:
        key = (s.load_pem_private_key(p.read_bytes(), password=None) if private
               else s.load_pem_public_key(p.read_bytes()))
    except (ValueError, TypeError):
        hint = " (give the private key, not KEY.pub)" if private else " (give KEY.pub, not the private key)"
        raise EdgesslError(f"{p}: not a PEM {what} key{hint}") from None
    if not isinstance(key, Ed25519PrivateKey if private else Ed25519PublicKey):
        raise EdgesslError(f"{p}: not an Ed25519 {what} key (make one with `edgessl keygen`)")
    return key


def sign_bundle(root: Path, manifest: bytes, key_path: str | Path) -> dict:
    """Write the detached signature of the bundle at ``root`` over ``manifest``, the manifest bytes
    a verified load read (``Bundle.raw``); returns the signature record."""
    key = _load_key(key_path, private=True)
    record = {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
              "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
              "signature": base64.b64encode(key.sign(manifest)).decode()}
    write_atomic(Path(root) / SIGNATURE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def read_signature(root: Path) -> dict | None:
    """The bundle's detached signature record, or None when the bundle is unsigned."""
    p = Path(root) / SIGNATURE
    if not p.is_file():
        return None
    try:
        record = json.loads(p.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise EdgesslError(f"{p}: not a signature record (not JSON); sign the bundle again") from None
    if not isinstance(record, dict):
        raise EdgesslError(f"{p}: not a signature record; sign the bundle again")
    return record


def verify_signature(manifest: bytes, root: Path, public_key_path: str | Path) -> str:
    """Refuse the bundle at ``root`` when unsigned or when its signature over ``manifest`` (the
    manifest's bytes) does not verify with ``public_key_path``; returns the key id."""
    from cryptography.exceptions import InvalidSignature

    key = _load_key(public_key_path, private=False)
    record = read_signature(root)
    if record is None:
        raise EdgesslError(f"{root}: the bundle is not signed ({SIGNATURE} missing) and --public-key "
                           "requires a signature; sign it with `edgessl sign --bundle B --key KEY`")
    try:
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise EdgesslError(f"{root}: bad signature: {SIGNATURE} does not verify with {public_key_path} "
                           "(the manifest changed after signing, or another key signed it); refusing to load") from None
    return key_id(key)
