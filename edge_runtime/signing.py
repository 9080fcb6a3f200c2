"""Ed25519 signatures over a bundle's sealed manifest (the ``cryptography`` package does the math).

``edgessl keygen --out KEY`` writes the private key ``KEY`` (PKCS#8 PEM, mode 0600) and the public
key ``KEY.pub`` (SubjectPublicKeyInfo PEM). ``edgessl sign`` writes ``BUNDLE/signature.json``::

    {"algorithm": "ed25519", "key_id": sha256(raw public key)[:16], "manifest_sha256": <bundle hash>,
     "signature": base64(Ed25519(private key, bytes of manifest.json))}

The signature covers ``manifest.json``'s exact bytes; the manifest lists every other file's sha256,
so it covers the whole bundle. Any change through ``update_bundle`` removes the signature. Every
field of the record is either signed or checked against what is: the signature over the manifest
bytes the loader read (and parsed, and hashed: the same bytes), ``manifest_sha256`` against their
hash (``Bundle.check_signed_hash``), ``key_id`` against the key that verified it, ``algorithm``
against the one this module knows. The record is read once per load (``Bundle.load``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from .errors import EdgesslError
from .files import read_regular, write_atomic
from .jsonio import parse_json

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
    if not p.exists():
        raise EdgesslError(f"{what} key {p} not found (make a pair with `edgessl keygen --out KEY`)")
    data = read_regular(p, f"{what} key")
    try:
        key = s.load_pem_private_key(data, password=None) if private else s.load_pem_public_key(data)
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


def parse_signature(data: bytes, where: str | Path) -> dict:
    """The detached signature record in ``data`` (``signature.json``'s bytes)."""
    record = parse_json(data, str(where))
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in
                                               ("algorithm", "key_id", "manifest_sha256", "signature")):
        raise EdgesslError(f"{where}: not a signature record; sign the bundle again")
    return record


def verify_signature(manifest: bytes, record: dict | None, root: Path, public_key_path: str | Path,
                     how_to_sign: str = "sign it with `edgessl sign --bundle B --key KEY`") -> str:
    """Refuse the bundle (or delta) at ``root`` when unsigned (``record`` None) or when ``record``
    (its parsed ``signature.json``) does not verify over ``manifest`` (the signed record's bytes) with
    ``public_key_path`` or names another key or algorithm; returns the key id."""
    from cryptography.exceptions import InvalidSignature

    key = _load_key(public_key_path, private=False)
    if record is None:
        raise EdgesslError(f"{root}: not signed ({SIGNATURE} missing) and a signature is required; {how_to_sign}")
    try:
        signature = base64.b64decode(record["signature"], validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    try:
        if record["algorithm"] != "ed25519":
            raise InvalidSignature
        key.verify(signature, manifest)
    except InvalidSignature:
        raise EdgesslError(f"{root}: bad signature: {SIGNATURE} does not verify with {public_key_path} "
                           "(the manifest changed after signing, or another key signed it); refusing to load") from None
    kid = key_id(key)
    if record["key_id"] != kid:
        raise EdgesslError(f"{root}: {SIGNATURE} names key {record['key_id']!r} but was made by key {kid} "
                           "(edited after signing); refusing to load")
    return kid
