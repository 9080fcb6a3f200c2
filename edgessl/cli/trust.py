"""The trust commands (torch-free): ``keygen``, ``sign``, ``bundle inspect|verify|check``, ``audit
verify``. Every check fails with one line and exit status 2 (``EdgesslError``); docs/trust.md."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline_options import TrustOptions
from edgessl.export.config import CHECK_TARGETS, TENSORRT_LINES, CheckConfig

from .options import EXIT_USER, Command, Opt, Outcome, config_from_args
from .shared import BUNDLE_HELP, TRUST


@dataclass
class KeygenConfig:
    out: str = ""


@dataclass
class SignConfig:
    """``sign_delta`` (``--delta``): sign the adaptation delta (``adapt/adapt.json``) instead of the manifest."""

    bundle: str = ""
    key: str = ""
    sign_delta: bool = False


@dataclass
class InspectConfig:
    bundle: str = ""


@dataclass
class VerifyConfig(InspectConfig, TrustOptions):
    pass


@dataclass
class AuditVerifyConfig:
    log: str = ""
    audit_key: str | None = None
    against: list[str] = field(default_factory=list)


BUNDLE_DIR = Opt("--bundle", BUNDLE_HELP, metavar="BUNDLE", required=True)


def _keygen(args: argparse.Namespace) -> Outcome:
    """Write an Ed25519 private key to --out (PEM, mode 0600; keep it off the device) and the public
    key to OUT.pub (give it to `--public-key` on the device). Never overwrites a file."""
    from edgessl.edge_runtime.signing import keygen

    private, public, kid = keygen(config_from_args(KeygenConfig, args).out)
    return Outcome({"private_key": str(private), "public_key": str(public), "key_id": kid},
                   f"private key {private} (keep it secret, off the device), public key {public}, key id {kid}")


def _sign(args: argparse.Namespace) -> Outcome:
    """Verify the bundle, then write BUNDLE/signature.json: an Ed25519 signature over manifest.json,
    which lists every file's sha256. Any later change to the bundle (calibrate, operating-point)
    removes it: sign again after. Engines built on the device (build-engine) go into the sealed
    engines delta and leave the signature in place. With --delta, sign the adaptation delta instead
    (BUNDLE/adapt/signature.json over adapt/adapt.json, which names the base's hash and lists its
    files), off the device, for `--require-signed-delta`; a new `edgessl adapt` removes it."""
    from edgessl.edge_runtime.bundle import ADAPT, Bundle
    from edgessl.edge_runtime.signing import sign_bundle

    cfg = config_from_args(SignConfig, args)
    bundle = Bundle.load(cfg.bundle)
    if not cfg.sign_delta:
        record = sign_bundle(bundle.root, bundle.raw, cfg.key)
        return Outcome(record, f"signed {cfg.bundle}: bundle sha256 {record['manifest_sha256']}, key id {record['key_id']}")
    if bundle.adapt is None:
        raise EdgesslError(f"{cfg.bundle}: no adaptation delta to sign ({ADAPT.folder}/ is absent; `edgessl adapt` makes one)")
    record = sign_bundle(bundle.root / ADAPT.folder, bundle.adapt.raw, cfg.key)
    return Outcome(record, f"signed the adaptation delta of {cfg.bundle}: {ADAPT.record} sha256 "
                           f"{record['manifest_sha256']}, key id {record['key_id']}")


def bundle_summary(bundle) -> dict:
    """What ``bundle inspect`` shows: files, precisions, the classifier (classes, positive class, labelled
    fraction), thresholds, operating points, engines, signature."""
    m = bundle.manifest
    signature = bundle.signature
    return {
        "bundle": str(bundle.root), "sha256": bundle.hash, "seal": (m.get("seal") or {}).get("sha256"),
        "tool_version": m.get("tool_version"), "created": m.get("created"),
        "files": {rel: {"sha256": digest, "bytes": len(bundle.read(rel))}
                  for rel, digest in m["files"].items()},
        "precisions": {k: {"model": v.get("model"), "dtype": v.get("dtype"), "float_nodes": v.get("float_nodes")}
                       for k, v in m.get("precisions", {}).items()},
        "classifier": ({"classes": m["classifier"]["classes"], "positive_class": m["classifier"].get("positive_class"),
                        "label_fraction": m["classifier"].get("provenance", {}).get("label_fraction")}
                       if "classifier" in m else None),
        "thresholds": {k: {f: v.get(f) for f in ("raw_threshold", "target_fpr", "offset", "scale", "rule")}
                       for k, v in m.get("thresholds", {}).items()},
        "operating_points": {k: {name: {f: p.get(f) for f in ("raw_threshold", "sensitivity", "specificity")}
                                 for name, p in points.items()}
                             for k, points in m.get("operating_points", {}).items()},
        "engines": [{**{f: e.get(f) for f in ("file", "precision", "tensorrt_version", "compute_capability",
                                              "dla_core")}, "raw_threshold": e["threshold"]["raw_threshold"]}
                    for e in bundle.engines],
        "signature": _signature(signature),
        "adapt": None if bundle.adapt is None else _adapt_summary(bundle.adapt),
    }


def _signature(record: dict | None) -> dict:
    return {"signed": True, "algorithm": record.get("algorithm"), "key_id": record.get("key_id")} if record else \
        {"signed": False}


def _adapt_summary(delta) -> dict:
    """The adaptation delta as ``bundle inspect`` shows it."""
    r = delta.record
    return {"base_sha256": r.get("base_sha256"), "created": r.get("created"), "images": r["added"].get("images"),
            "flagged": len(r["added"].get("flagged", [])), "banks": r.get("banks"), "max_bank": r.get("max_bank"),
            "thresholds": {k: t.get("raw_threshold") for k, t in r["thresholds"].items()},
            "left_out": r.get("left_out", {}),
            "signature": _signature(delta.signature)}


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
    if s["classifier"]:
        c = s["classifier"]
        lines.append(f"classifier {len(c['classes'])} classes ({', '.join(c['classes'])}), positive class "
                     f"{c['positive_class']}, trained on {c['label_fraction']} of the labels")
    lines.append("thresholds (raw; anomalous iff raw score >= it)")
    lines += [f"  {k:<14} {t['raw_threshold']}  (target FPR {t['target_fpr']})" for k, t in s["thresholds"].items()]
    if s["operating_points"]:
        lines.append("operating points")
        lines += [f"  {k:<14} {name}: raw {p['raw_threshold']}, sensitivity {p['sensitivity']}, "
                  f"specificity {p['specificity']}" for k, points in s["operating_points"].items()
                  for name, p in points.items()]
    if s["adapt"]:
        a = s["adapt"]
        sig = a["signature"]
        lines.append(f"adaptation (the sealed delta adapt/, for base {a['base_sha256'][:12]}; --no-delta ignores it, "
                     "removing it rolls back)")
        lines.append(f"  {a['images']} images added ({a['flagged']} flagged before, accepted), banks "
                     + ", ".join(f"{k} {v}" for k, v in a["banks"].items()) + f" rows (at most {a['max_bank']})")
        lines += [f"  threshold {k:<14} {t}" for k, t in a["thresholds"].items()]
        lines += [f"  threshold {k:<14} none ({why}; refused with the delta: re-run `edgessl calibrate`, then adapt)"
                  for k, why in a["left_out"].items()]
        lines.append("  signature " + (f"ed25519, key id {sig['key_id']}" if sig["signed"] else
                                       "none (`edgessl sign --delta`, off the device)"))
    if s["engines"]:
        lines.append("engines (the sealed engines delta, engines/engines.json; not covered by the signature)")
        lines += [f"  {e['file']}  {e['precision']}, TensorRT {e['tensorrt_version']}, sm {e['compute_capability']}"
                  + ("" if e["dla_core"] is None else f", DLA core {e['dla_core']}") + f", threshold {e['raw_threshold']}"
                  for e in s["engines"]]
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> Outcome:
    """Verify the bundle (seal, files) and show what it holds: files, precisions, thresholds,
    operating points, engines, signature and its sha256 (for --expect-sha256)."""
    from edgessl.edge_runtime.bundle import Bundle

    summary = bundle_summary(Bundle.load(config_from_args(InspectConfig, args).bundle))
    return Outcome(summary, _table(summary))


def _verify(args: argparse.Namespace) -> Outcome:
    """Check the seal, every listed file's sha256, that no file is unlisted, and with --public-key
    the signature, with --expect-sha256 the pinned hash. Exit 0 when all pass; else one line naming
    the problem and exit 2."""
    from edgessl.edge_runtime.bundle import Bundle

    cfg = config_from_args(VerifyConfig, args)
    b = Bundle.load(cfg.bundle, public_key=cfg.public_key, expect_sha256=cfg.expect_sha256, delta=cfg.delta,
                    require_signed_delta=cfg.require_signed_delta)
    checks = ["seal", f"{len(b.manifest['files'])} files", "no unlisted file"]
    checks += [f"engines delta ({len(b.engines)} engines)"] if b.engines else []
    checks += ["adaptation delta" + (" (signed)" if cfg.public_key and b.adapt.signature else "")] if b.adapt else []
    checks += ["signature"] if cfg.public_key else []
    checks += ["pinned sha256"] if cfg.expect_sha256 else []
    return Outcome({"bundle": str(b.root), "sha256": b.hash, "checks": checks},
                   f"{b.root}: ok ({', '.join(checks)}); sha256 {b.hash}")


def _check(args: argparse.Namespace) -> Outcome:
    """Check each model TensorRT engines are built from (model.onnx, model.int8-tensorrt.onnx)
    against the ONNX parser rules of the TensorRT lines asked for (10: TensorRT 10.3, JetPack 6;
    11: TensorRT 11.x, JetPack 7), statically, without TensorRT: ops and their input types, Q/DQ
    types, zero points, scales and per-channel axes, constant inputs, attributes, the opset, and
    dynamic dimensions against build-engine's default profile (docs/export.md lists the rules).
    Needs the onnx package. Exit 0 when every model passes; else one line on stderr naming the
    first node and its rule, and exit 2 (--json lists every finding).
    """
    from edgessl.edge_runtime.bundle import Bundle
    from edgessl.export.config import EngineConfig, engine_batches
    from edgessl.export.tensorrt_preflight import check_bundle

    cfg = config_from_args(CheckConfig, args)
    unknown = sorted(set(cfg.tensorrt) - set(TENSORRT_LINES))
    if unknown:
        raise EdgesslError(f"--tensorrt {' '.join(unknown)}: the preflight knows TensorRT lines {', '.join(TENSORRT_LINES)}")
    bundle = Bundle.load(cfg.bundle)
    results = check_bundle(bundle, tuple(cfg.tensorrt), engine_batches(EngineConfig()))
    summary = {"bundle": str(bundle.root), "sha256": bundle.hash, "tensorrt": cfg.tensorrt,
               "models": {m: [f.to_dict() for f in found] for m, found in results.items()}}
    lines = [f"{m}: " + ("passes" if not found else f"{len(found)} findings, first: {found[0].line()}")
             for m, found in results.items()]
    failed = [(m, found) for m, found in results.items() if found]
    if not failed:
        return Outcome(summary, "\n".join(lines) + f"\n(TensorRT lines {', '.join(cfg.tensorrt)})")
    model, found = failed[0]
    more = sum(len(f) for _, f in failed) - 1
    print(f"edgessl bundle check: error: {model} would not parse in TensorRT: {found[0].line()}"
          + (f" (and {more} more)" if more else ""), file=sys.stderr)
    return Outcome(summary, "\n".join(lines), status=EXIT_USER)


def _audit_verify(args: argparse.Namespace) -> Outcome:
    """Check every line of a triage audit log byte for byte, the hash chain and the anchor (and every
    HMAC with --audit-key); with --against, that every study a worklist or report names is in the
    log as written there. Exit 0 when all pass; else one line naming the first affected line and
    exit 2. An empty log, a log without its anchor, and a torn tail (a crash mid-append, repaired
    by the next triage run) never pass. What a log cannot show on its own is its deletion together
    with its anchor: a worklist or report of an earlier run then names entries the log lacks."""
    from edgessl.edge_runtime.medical.audit_evidence import check_evidence
    from edgessl.edge_runtime.medical.audit_log import is_keyed, verified_entries

    cfg = config_from_args(AuditVerifyConfig, args)
    entries = verified_entries(cfg.log, cfg.audit_key)
    checked = {path: check_evidence(entries, path) for path in cfg.against}
    macs = ("HMACs verified" if cfg.audit_key else
            "HMACs NOT checked: pass --audit-key" if is_keyed(cfg.log) else "no HMACs")
    evidence = ("; " + ", ".join(f"{p}: its {n} studies are in the log" for p, n in checked.items()) if checked else
                "; a log deleted with its anchor cannot show here: check a worklist or report with --against")
    return Outcome({"log": cfg.log, "entries": len(entries), "hmacs_checked": bool(cfg.audit_key),
                    "against": checked},
                   f"{cfg.log}: ok, {len(entries)} entries (every line, the chain and the anchor; {macs}){evidence}")


KEYGEN = Command("keygen", _keygen, (KeygenConfig,), (
    Opt("--out", "private key file (PEM, mode 0600); the public key goes to OUT.pub", metavar="KEY", required=True),),
    help="make an Ed25519 key pair to sign bundles with")
SIGN = Command("sign", _sign, (SignConfig,), (
    BUNDLE_DIR, Opt("--key", "private key from `edgessl keygen`", metavar="KEY", required=True),
    Opt("--delta", "sign the adaptation delta (adapt/adapt.json) instead of the bundle", dest="sign_delta")),
    help="sign a bundle (a detached Ed25519 signature over its sealed manifest)")
BUNDLE_INSPECT = Command("bundle inspect", _inspect, (InspectConfig,), (BUNDLE_DIR,),
                         help="files, precisions, thresholds, operating points, engines, signature")
BUNDLE_VERIFY = Command("bundle verify", _verify, (VerifyConfig,), (BUNDLE_DIR, *TRUST),
                        help="exit 0 only when the seal, the files, and any signature or pin asked for check")
BUNDLE_CHECK = Command("bundle check", _check, (CheckConfig,), (
    BUNDLE_DIR, Opt("--target", "whose rules: TensorRT's ONNX parser", choices=CHECK_TARGETS),
    Opt("--tensorrt", "the TensorRT lines to check for (10: 10.3, JetPack 6; 11: JetPack 7)", metavar="LINE")),
    help="would TensorRT parse the bundle's models? a static preflight (exit 2 naming the node and rule)")
AUDIT_VERIFY = Command("audit verify", _audit_verify, (AuditVerifyConfig,), (
    Opt("--log", "the audit log (REPORT_DIR/audit.jsonl)", metavar="FILE", required=True),
    Opt("--audit-key", "the key triage ran with (--audit-key): check every HMAC", metavar="FILE"),
    Opt("--against", "worklist.csv or report.html files of triage runs: every study they name must be in the log",
        metavar="FILE")),
    help="check every line, the hash chain and the anchor (and HMACs with --audit-key)")

# Command groups: the first word of a nested command's name, with its help.
GROUPS = {"bundle": "inspect, verify or check a bundle", "audit": "verify a triage audit log"}
COMMANDS = (KEYGEN, SIGN, BUNDLE_INSPECT, BUNDLE_VERIFY, BUNDLE_CHECK, AUDIT_VERIFY)
