"""CLI registration of the trust commands (torch-free): ``keygen``, ``sign``, ``bundle inspect|verify``,
``audit verify``. Every check fails with one line and exit status 2 (``EdgesslError``)."""

from __future__ import annotations

import argparse
import json

from .run import add_trust_options


def _keygen(args: argparse.Namespace) -> int:
    from ..signing import keygen

    private, public, kid = keygen(args.out)
    print(f"private key {private} (keep it secret, off the device), public key {public}, key id {kid}")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from ..signing import sign_bundle

    record = sign_bundle(args.bundle, args.key)
    print(f"signed {args.bundle}: bundle sha256 {record['manifest_sha256']}, key id {record['key_id']}")
    return 0


def bundle_summary(bundle) -> dict:
    """What ``bundle inspect`` shows: files, precisions, thresholds, operating points, engines, signature."""
    m = bundle.manifest
    signature = bundle.signature
    return {
        "bundle": str(bundle.root), "sha256": bundle.hash, "seal": (m.get("seal") or {}).get("sha256"),
        "tool_version": m.get("tool_version"), "created": m.get("created"),
        "files": {rel: {"sha256": digest, "bytes": bundle.path(rel).stat().st_size}
                  for rel, digest in m["files"].items()},
        "precisions": {k: {"model": v.get("model"), "dtype": v.get("dtype"), "float_nodes": v.get("float_nodes")}
                       for k, v in m.get("precisions", {}).items()},
        "thresholds": {k: {f: v.get(f) for f in ("raw_threshold", "target_fpr", "offset", "scale", "rule")}
                       for k, v in m.get("thresholds", {}).items()},
        "operating_points": {k: {name: {f: p.get(f) for f in ("raw_threshold", "sensitivity", "specificity")}
                                 for name, p in points.items()}
                             for k, points in m.get("operating_points", {}).items()},
        "engines": [{f: e.get(f) for f in ("file", "precision", "tensorrt_version", "compute_capability")}
                    for e in m.get("engines", [])],
        "signature": ({"signed": True, "algorithm": signature.get("algorithm"), "key_id": signature.get("key_id")}
                      if signature else {"signed": False}),
    }


def _table(s: dict) -> str:
    sig = s["signature"]
    lines = [f"bundle     {s['bundle']}", f"sha256     {s['sha256']}  (pin with --expect-sha256)",
             f"sealed     yes ({s['seal']})", "signature  " + (f"ed25519, key id {sig['key_id']} (check it with "
                                                              "`edgessl bundle verify --public-key KEY.pub`)"
                                                              if sig["signed"] else "none (`edgessl sign`)"),
             "files"]
    lines += [f"  {rel:<40} {f['bytes']:>11,d} B  {f['sha256'][:16]}" for rel, f in s["files"].items()]
    lines.append("precisions")
    lines += [f"  {k:<14} {p['model']}  ({p['dtype'] or '?'}"
              + (f", {len(p['float_nodes'])} nodes kept in float" if p["float_nodes"] else "") + ")"
              for k, p in s["precisions"].items()]
    lines.append("thresholds (raw; anomalous iff raw score >= it)")
    lines += [f"  {k:<14} {t['raw_threshold']}  (target FPR {t['target_fpr']})" for k, t in s["thresholds"].items()]
    if s["operating_points"]:
        lines.append("operating points")
        lines += [f"  {k:<14} {name}: raw {p['raw_threshold']}, sensitivity {p['sensitivity']}, "
                  f"specificity {p['specificity']}" for k, points in s["operating_points"].items()
                  for name, p in points.items()]
    if s["engines"]:
        lines.append("engines")
        lines += [f"  {e['file']}  {e['precision']}, TensorRT {e['tensorrt_version']}, sm {e['compute_capability']}"
                  for e in s["engines"]]
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    from ..bundle import Bundle

    summary = bundle_summary(Bundle.load(args.bundle))
    print(json.dumps(summary, indent=2) if args.json else _table(summary))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..bundle import Bundle

    b = Bundle.load(args.bundle, public_key=args.public_key, expect_sha256=args.expect_sha256)
    checks = ["seal", f"{len(b.manifest['files'])} files", "no unlisted file"]
    checks += ["signature"] if args.public_key else []
    checks += ["pinned sha256"] if args.expect_sha256 else []
    print(f"{b.root}: ok ({', '.join(checks)}); sha256 {b.hash}")
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from ..medical.audit_log import is_keyed, verify_audit_log

    n = verify_audit_log(args.log, args.audit_key)
    macs = ("HMACs verified" if args.audit_key else
            "HMACs NOT checked: pass --audit-key" if is_keyed(args.log) else "no HMACs")
    print(f"{args.log}: ok, {n} entries (every line, the chain and the anchor; {macs})")
    return 0


def register(sub) -> dict[str, argparse.ArgumentParser]:
    k = sub.add_parser("keygen", help="make an Ed25519 key pair to sign bundles with",
                       description="Write the private key to --out (PEM, mode 0600; keep it off the device) and "
                                   "the public key to OUT.pub (give it to `--public-key` on the device). Never "
                                   "overwrites a file.")
    k.add_argument("--out", required=True, metavar="KEY", help="private key file; the public key goes to KEY.pub")
    k.set_defaults(handler=_keygen)

    s = sub.add_parser("sign", help="sign a bundle (a detached Ed25519 signature over its sealed manifest)",
                       description="Verify the bundle, then write BUNDLE/signature.json: an Ed25519 signature over "
                                   "manifest.json, which lists every file's sha256. Any later change to the bundle "
                                   "(calibrate, build-engine, operating-point) removes it: sign again after.")
    s.add_argument("--bundle", required=True, metavar="BUNDLE")
    s.add_argument("--key", required=True, metavar="KEY", help="private key from `edgessl keygen`")
    s.set_defaults(handler=_sign)

    b = sub.add_parser("bundle", help="inspect or verify a bundle")
    bsub = b.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    i = bsub.add_parser("inspect", help="files, precisions, thresholds, operating points, engines, signature",
                        description="Verify the bundle (seal, files) and show what it holds.")
    i.add_argument("bundle", metavar="BUNDLE")
    i.add_argument("--json", action="store_true", help="one JSON object")
    i.set_defaults(handler=_inspect)
    v = bsub.add_parser("verify", help="exit 0 only when the seal, the files, and any signature or pin asked for check",
                        description="Check the seal, every listed file's sha256, that no file is unlisted, and with "
                                    "--public-key the signature, with --expect-sha256 the pinned hash. Exit 0 when "
                                    "all pass; else one line naming the problem and exit 2.")
    v.add_argument("bundle", metavar="BUNDLE")
    add_trust_options(v)
    v.set_defaults(handler=_verify)

    a = sub.add_parser("audit", help="verify a triage audit log")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    av = asub.add_parser("verify", help="check every line, the hash chain and the anchor (and HMACs with --audit-key)",
                         description="Exit 0 when every line, the chain and the anchor check; else one line naming "
                                     "the first affected line and exit 2.")
    av.add_argument("log", metavar="FILE", help="the audit log (REPORT_DIR/audit.jsonl)")
    av.add_argument("--audit-key", metavar="FILE", help="the key triage ran with (--audit-key): check every HMAC")
    av.set_defaults(handler=_audit_verify)
    return {"keygen": k, "sign": s, "bundle": b, "audit": a}
