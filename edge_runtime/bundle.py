"""The bundle: one directory the device loads by path, described by ``manifest.json``.

    BUNDLE/manifest.json              what everything is (schema below), sha256 of every other file
    BUNDLE/model.onnx                 fp32 FeatureModel (input "input", outputs "embedding"[, "patches"]
                                      [, "logits", "probabilities"]) and the detector's scoring:
                                      "anomaly_score"[, "anomaly_map"]
    BUNDLE/detector/detector.json|npz the anomaly detector (edge_runtime.detectors), when there is one
    BUNDLE/model.int8-cpu.onnx        Q/DQ INT8, asymmetric uint8 activations  (after calibrate)
    BUNDLE/model.int8-tensorrt.onnx   Q/DQ INT8, symmetric int8 activations     (after calibrate)
    BUNDLE/engines/engines.json       the engines delta (after build-engine on the device): see below
    BUNDLE/engines/*.engine           TensorRT engines keyed by TensorRT version and GPU

Manifest keys (``MANIFEST_VERSION`` 1): ``format``, ``manifest_version``, ``tool_version``, ``created``,
``model`` (input/output names and shapes, opset, verification, ``scoring``: the detector in the
graph, ``graph_scores``; absent in bundles made before), ``preprocess`` (a ``PreprocessSpec``),
``detector`` (kind, directory, inputs; absent in a classifier-only bundle), ``classifier`` (optional:
``classes`` in output order, ``positive_class`` or null, the head's ``provenance``), ``precisions``
(precision key -> model file and details),
``thresholds`` (precision key -> ``Threshold`` record), ``operating_points`` (optional),
``calibration`` (optional), ``provenance``, ``files`` (relative path -> sha256).

The bundle hash is the sha256 of ``manifest.json``'s bytes: since the manifest lists every file's
sha256, it identifies the whole bundle (``--expect-sha256`` pins it).

**The seal.** ``manifest["seal"] = {"sha256": sha256(canonical_json(manifest without "seal"))}``,
canonical JSON being sorted keys and no whitespace. Loading refuses, in this order: a manifest
without its ``files`` list, a broken seal (the manifest edited in place), a section of the wrong
type, a bundle whose hash is not the pinned one, an unsigned bundle or a bad signature when a
public key is given (``signing``), a signed bundle whose manifest is not the one signed, a listed
file missing or not matching its sha256, and any file the manifest does not list (only
``manifest.json`` and the detached ``signature.json`` are not listed), or a symbolic link, FIFO or
device anywhere in the bundle. The seal stops edits by hand and by mistake; an attacker can
recompute it, which the signature or the pin then refuses. A bundle is made or changed only
through ``bundle_update.update_bundle``.

**Verified bytes are the bytes used.** Every file is read once, into memory: ``manifest.json``
is parsed from the bytes the pin and the signature check, ``signature.json`` is read once, and
each listed file (models, detector, engines) is hashed from the bytes ``read`` then hands out,
so a file swapped after its check is never used (nothing is opened again by path). A caller that
has built what it needs drops them (``release_files``).

**The engines delta.** TensorRT engines are built on the device, after the bundle was sealed and
signed elsewhere, so they are kept beside the base rather than in it: ``engines/`` holds the engine
files and ``engines/engines.json``, ``{"format": "edgessl-engines", "base_sha256": <the bundle
hash>, "engines": [records, edge_runtime.engines], "files": {path: sha256}, "seal": ...}``, sealed
like the manifest. The base manifest does not list ``engines/``, so adding an engine leaves
``manifest.json`` (its hash, pin and signature) as it was. Loading refuses a delta whose seal is
broken, that names another base bundle, whose files are missing, altered or unlisted, or an
``engines/`` folder without its ``engines.json``. The delta is sealed, not signed: the device
made it. ``bundle_update.add_engine`` writes it; any change to the base drops it (its engines
were built for the old base).

**The adaptation delta.** ``edgessl adapt`` (``streams.adapt``) writes ``adapt/``, a delta of the
same form (``Delta``): ``adapt/adapt.json`` ``{"format": "edgessl-adapt", "base_sha256", "files",
"seal", "thresholds", "added", "banks", ...}`` beside the adapted detector
(``adapt/detector.json|npz``), checked at load like the engines delta. It may carry a detached
signature, ``adapt/signature.json`` (the record of ``signing``, over ``adapt.json``'s bytes), made
off-device with ``edgessl sign --delta``: ``require_signed_delta`` (with ``public_key``) refuses a
delta without a valid one, and a signature present is checked whenever a public key is given.
``delta=False`` (``--no-delta``) ignores the folder; removing it rolls the device back. The record
holds a threshold for each ONNX precision adapt could re-derive (``thresholds``) and names those it
could not (``left_out``: precision -> why); ``adapt_threshold`` refuses the others and engines.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EdgesslError
from .files import file_sha256, read_regular, write_atomic
from .jsonio import canonical_json, parse_json
from .signing import SIGNATURE, parse_signature, verify_signature

FORMAT = "edgessl-bundle"
MANIFEST_VERSION = 1
MANIFEST = "manifest.json"
ENGINES_DIR = "engines"
ADAPT_DIR = "adapt"
UNLISTED = (MANIFEST, SIGNATURE)  # the signature signs manifest.json's bytes, so it cannot be listed in it
PRECISIONS = ("fp32", "int8-cpu", "int8-tensorrt")
SECTIONS = {"model": dict, "preprocess": dict, "detector": dict, "precisions": dict, "thresholds": dict,
            "operating_points": dict, "calibration": dict, "provenance": dict,
            "intended_use": dict, "classifier": dict}  # the JSON type of each top-level section, when present


@dataclass(frozen=True)
class Delta:
    """A sealed folder beside the base bundle, made after it (the base manifest does not list it):
    its record ``FOLDER/FOLDER.json`` names the base bundle's hash and its files' sha256."""

    folder: str
    format: str
    remake: str  # how to make it again, for the messages that refuse it

    @property
    def record(self) -> str:
        return f"{self.folder}/{self.folder}.json"

    @property
    def signature(self) -> str:
        return f"{self.folder}/{SIGNATURE}"


@dataclass(frozen=True)
class DeltaRecord:
    """A delta's record as loaded: parsed, its bytes (what a signature signs) and its signature record."""

    record: dict
    raw: bytes
    signature: dict | None = None


ENGINES = Delta(ENGINES_DIR, "edgessl-engines", "rebuild the engines with `edgessl build-engine`")
ADAPT = Delta(ADAPT_DIR, "edgessl-adapt", "run `edgessl adapt` again")
DELTAS = (ENGINES, ADAPT)


def precision_key(precision: str, backend: str) -> str:
    """The manifest key of a requested precision on a backend.

    ``fp32`` everywhere; ``int8`` means the asymmetric CPU model on ``ort-cpu`` and the symmetric
    TensorRT-style model on the GPU providers; ``fp16`` exists only as a TensorRT build option.
    """
    if precision == "fp32":
        return "fp32"
    if precision == "int8":
        return "int8-cpu" if backend == "ort-cpu" else "int8-tensorrt"
    raise EdgesslError(f"unknown precision {precision!r}; use fp32 or int8")


def seal_digest(manifest: dict) -> str:
    """sha256 of the canonical JSON of ``manifest`` without its ``seal``."""
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "seal"})).hexdigest()


def _files_under(root: Path, folder: Path) -> list[str]:
    """Every file below ``folder`` (relative to ``root``, sorted); a symbolic link (to a file or a
    folder, which a walk would otherwise not descend into), FIFO, socket or device is refused."""
    out = []
    with os.scandir(folder) as entries:
        for entry in entries:
            rel = Path(entry.path).relative_to(root).as_posix()
            if entry.is_dir(follow_symlinks=False):
                out += _files_under(root, Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                out.append(rel)
            else:
                what = "a symbolic link" if entry.is_symlink() else "not a regular file"
                raise EdgesslError(f"{root}: {rel} is {what}; a bundle holds only files and folders; refusing to "
                                   "load (remove it)")
    return sorted(out)


def bundle_files(bundle_dir: Path) -> list[str]:
    """Every file of the base bundle (relative POSIX paths, sorted): all but the manifest, the
    signature and the deltas (``engines/``, ``adapt/``)."""
    return [rel for rel in _files_under(Path(bundle_dir), Path(bundle_dir))
            if rel not in UNLISTED and rel.split("/")[0] not in (d.folder for d in DELTAS)]


def seal_delta(bundle_dir: Path, delta: Delta, base_sha256: str, body: dict) -> dict:
    """Hash every file of ``bundle_dir/FOLDER`` and write the delta's sealed record, ``body`` plus
    the base bundle's hash (a primitive of ``bundle_update``); returns the record."""
    bundle_dir = Path(bundle_dir)
    files = {rel: file_sha256(bundle_dir / rel) for rel in _files_under(bundle_dir, bundle_dir / delta.folder)
             if rel not in (delta.record, delta.signature)}
    record = {**body, "format": delta.format, "base_sha256": base_sha256, "files": files}
    record["seal"] = {"sha256": seal_digest(record), "over": "canonical JSON (sorted keys) without 'seal'"}
    write_atomic(bundle_dir / delta.record, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return record


def seal(bundle_dir: Path, manifest: dict) -> dict:
    """Hash every file into ``manifest["files"]``, seal the manifest, write ``manifest.json`` atomically.

    A primitive of ``bundle_update.update_bundle``, which every command that changes a bundle goes through.
    """
    bundle_dir = Path(bundle_dir)
    files = {rel: file_sha256(bundle_dir / rel) for rel in bundle_files(bundle_dir)}
    manifest = {**manifest, "format": FORMAT, "manifest_version": MANIFEST_VERSION, "files": files}
    manifest["seal"] = {"sha256": seal_digest(manifest), "over": "canonical JSON (sorted keys) without 'seal'"}
    write_atomic(bundle_dir / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def _inside(rel) -> bool:
    """``rel`` is a relative path that stays inside the bundle."""
    return isinstance(rel, str) and rel not in ("", ".") and not Path(rel).is_absolute() and ".." not in Path(rel).parts


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _adapt_record(record: dict) -> bool:
    """The adaptation record has the shape its readers index: thresholds, banks and the precisions
    left out as objects, the added images' lists, their scores (per precision) numbers."""
    added, thresholds, banks = record.get("added"), record.get("thresholds"), record.get("banks")
    left_out = record.get("left_out", {})
    scores = added.get("raw_scores") if isinstance(added, dict) else None
    return isinstance(thresholds, dict) and all(isinstance(t, dict) for t in thresholds.values()) and \
        isinstance(left_out, dict) and all(isinstance(v, str) for v in left_out.values()) and \
        isinstance(banks, dict) and all(_number(n) for n in banks.values()) and _number(record.get("max_bank")) and \
        isinstance(added, dict) and _number(added.get("images")) and \
        all(isinstance(added.get(k), list) for k in ("names", "flagged", "data")) and isinstance(scores, dict) and \
        all(isinstance(v, list) and all(_number(x) for x in v) for v in scores.values())


def check_pin(text: str) -> str:
    """A ``--expect-sha256`` value: 64 hex digits, lower-cased."""
    pin = text.strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise EdgesslError(f"--expect-sha256 {text!r}: expected the bundle's sha256, 64 hex digits "
                           "(`edgessl bundle inspect BUNDLE` prints it)")
    return pin


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    root: Path
    manifest: dict
    hash: str
    raw: bytes  # manifest.json's bytes, which ``manifest`` was parsed from and ``hash`` hashes
    signature: dict | None = None  # the detached signature record, read once (None: unsigned)
    engines: list[dict] = field(default_factory=list)  # the engines delta's records (verified loads only)
    adapt: DeltaRecord | None = None  # the adaptation delta (verified loads, unless ignored)
    verified: dict[str, bytes] = field(default_factory=dict, repr=False)  # each checked file's bytes, by path

    @classmethod
    def load(cls, path: str | Path, verify: bool = True, public_key: str | Path | None = None,
             expect_sha256: str | None = None, delta: bool = True, require_signed_delta: bool = False) -> "Bundle":
        """Read ``manifest.json``; with ``verify``, the checks of the module docstring. ``public_key``
        (a ``.pub`` file) requires a valid signature; ``expect_sha256`` pins the bundle hash;
        ``delta`` False ignores the adaptation delta; ``require_signed_delta`` refuses one that is
        not signed with ``public_key``."""
        if require_signed_delta and public_key is None:
            raise EdgesslError("--require-signed-delta checks the adaptation delta's signature with --public-key; "
                               "give --public-key KEY.pub")
        root = Path(path)
        mpath = root / MANIFEST
        if not mpath.exists():
            raise EdgesslError(f"{root}: not a bundle (no {MANIFEST}; make one with `edgessl export`)")
        raw = read_regular(mpath, "bundle manifest")
        manifest = parse_json(raw, str(mpath))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise EdgesslError(f"{mpath}: not an edgessl bundle manifest")
        version = manifest.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise EdgesslError(f"{root}: bundle format version {version} is not supported by this edgessl "
                               f"(expects {MANIFEST_VERSION}); re-export it with `edgessl export`")
        spath = root / SIGNATURE
        signature = parse_signature(read_regular(spath, "signature"), spath) if os.path.lexists(spath) else None
        bundle = cls(root, manifest, hashlib.sha256(raw).hexdigest(), raw, signature)
        if verify:
            bundle.check_seal()
        pin = None if expect_sha256 is None else check_pin(expect_sha256)
        if pin is not None and bundle.hash != pin:
            raise EdgesslError(f"{root}: bundle sha256 {bundle.hash} is not the pinned {pin} (--expect-sha256); "
                               "refusing to load")
        if public_key is not None:
            verify_signature(raw, signature, root, public_key)
        if verify:
            bundle.check_signed_hash()
            bundle.verify()
            bundle.engines = bundle.read_engines()
            if delta:
                bundle.read_adapt(public_key, require_signed_delta)
        return bundle

    def check_signed_hash(self) -> None:
        """A signed bundle's manifest is the one that was signed (edgessl removes the signature on any
        change, so a mismatch is a change made outside it; without a key this stops only the naive)."""
        record = self.signature
        if record is not None and record["manifest_sha256"] != self.hash:
            raise EdgesslError(f"{self.root}: the manifest changed after the bundle was signed (outside edgessl); "
                               "refusing to load")

    def check_seal(self) -> None:
        """The manifest has its ``files`` list and its seal matches its content."""
        mpath = self.root / MANIFEST
        if not isinstance(self.manifest.get("files"), dict):
            raise EdgesslError(f"{mpath}: the manifest has no 'files' list, so no file can be checked; "
                               "refusing to load (re-export the bundle)")
        seal_record = self.manifest.get("seal")
        if not isinstance(seal_record, dict) or "sha256" not in seal_record:
            raise EdgesslError(f"{mpath}: the manifest has no seal (edited, or made by an older edgessl); "
                               "refusing to load (re-export the bundle)")
        if seal_record["sha256"] != seal_digest(self.manifest):
            raise EdgesslError(f"{mpath}: the manifest was edited after it was sealed (its content does not "
                               "match its seal); refusing to load")
        self.check_sections()

    def check_sections(self) -> None:
        """Each section present has its JSON type, the entries the runtime indexes are objects, and
        a classifier's classes are names with its positive class among them."""
        where = self.root / MANIFEST
        for name, kind in SECTIONS.items():
            if name in self.manifest and not isinstance(self.manifest[name], kind):
                raise EdgesslError(f"{where}: manifest section {name!r} must be a JSON {kind.__name__}")
        m = self.manifest
        for name in ("precisions", "thresholds", "operating_points"):
            bad = next((k for k, v in m.get(name, {}).items() if not isinstance(v, dict)), None)
            if bad is not None:
                raise EdgesslError(f"{where}: manifest entry {name}.{bad} must be a JSON object")
        for key, p in m.get("precisions", {}).items():
            if not isinstance(p.get("model"), str) or not _inside(p["model"]):
                raise EdgesslError(f"{where}: precisions.{key}.model must name a file in the bundle")
        if not _inside(m.get("detector", {}).get("directory", "detector")):
            raise EdgesslError(f"{where}: detector.directory must name a folder in the bundle")
        classifier = m.get("classifier", {})
        classes = classifier.get("classes", [])
        if not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)) or \
                classifier.get("positive_class") not in [None, *classes]:
            raise EdgesslError(f"{where}: classifier.classes must be a list of class names, and positive_class "
                               "one of them or null")

    def section(self, name: str) -> dict:
        """A manifest section the caller needs, or ``EdgesslError`` when the manifest lacks it."""
        if name not in self.manifest:
            raise EdgesslError(f"{self.root / MANIFEST}: the manifest has no {name!r} section; re-export the bundle")
        return self.manifest[name]

    def verify(self) -> None:
        """Every listed file exists and has its recorded sha256 (its bytes kept in ``files``); no other
        file is in the bundle."""
        files = self.manifest["files"]
        for rel, digest in files.items():
            if not _inside(rel):
                raise EdgesslError(f"{self.root}: the manifest lists {rel!r}, outside the bundle; refusing to load")
            self.verified[rel] = self._read_listed(rel, digest, "modified after export")
        for rel in bundle_files(self.root):
            if rel not in files:
                raise EdgesslError(f"{self.root}: {rel} is not listed in the manifest (added after sealing); "
                                   "refusing to load (remove it)")

    def _read_listed(self, rel: str, digest, changed: str) -> bytes:
        """The bytes of the listed file ``rel``, read once, refused unless their sha256 is ``digest``."""
        p = self.root / rel
        if not os.path.lexists(p):
            raise EdgesslError(f"{self.root}: file {rel} listed in the manifest is missing")
        if p.is_symlink():
            raise EdgesslError(f"{self.root}: {rel} is a symbolic link; a bundle holds only files and folders; "
                               "refusing to load")
        data = read_regular(p, "bundle file")
        if hashlib.sha256(data).hexdigest() != digest:  # a digest that is not a string never matches
            raise EdgesslError(f"{self.root}: {rel} does not match its sha256 in the manifest ({changed}); "
                               "refusing to load")
        return data

    def read(self, rel: str) -> bytes:
        """The verified bytes of the listed file ``rel`` (a verified load's; never read again from disk)."""
        if rel not in self.verified:
            state = "released" if self.manifest.get("files", {}).get(rel) else "not a verified file of it"
            raise EdgesslError(f"{self.root}: {rel} is {state}")
        return self.verified[rel]

    def release_files(self) -> None:
        """Drop the verified bytes once what uses them is built (a pipeline's model and detector)."""
        self.verified = {}

    def read_delta(self, delta: Delta) -> DeltaRecord | None:
        """The record of ``delta`` with its bytes, verified (module docstring: the engines delta), its
        files' bytes kept in ``verified``; None when the bundle has no such folder."""
        folder, path, fix = self.root / delta.folder, self.root / delta.record, f"remove {delta.folder}/ and {delta.remake}"
        if not folder.exists():
            return None
        if not path.is_file():
            raise EdgesslError(f"{self.root}: {delta.folder}/ has no {Path(delta.record).name}; refusing to load "
                               f"(remove {delta.folder}/)")
        raw = read_regular(path, f"{delta.folder} record")
        try:
            record = parse_json(raw, str(path))
        except EdgesslError:
            record = None
        if not isinstance(record, dict) or record.get("format") != delta.format or not isinstance(record.get("files"), dict):
            raise EdgesslError(f"{path}: not an {delta.format} record; refusing to load ({fix})")
        if (record.get("seal") or {}).get("sha256") != seal_digest(record):
            raise EdgesslError(f"{path}: edited after it was sealed; refusing to load ({fix})")
        if record.get("base_sha256") != self.hash:
            raise EdgesslError(f"{path}: made for bundle {str(record.get('base_sha256'))[:12]}, not this one "
                               f"({self.hash[:12]}); refusing to load ({fix})")
        for rel, digest in record["files"].items():
            if not _inside(rel) or rel.split("/")[0] != delta.folder or rel in (delta.record, delta.signature):
                raise EdgesslError(f"{path}: lists {rel!r}, outside {delta.folder}/; refusing to load")
            try:
                self.verified[rel] = self._read_listed(rel, digest, "altered")
            except EdgesslError:
                raise EdgesslError(f"{self.root}: {delta.folder} file {rel} is missing or altered; refusing to load "
                                   f"({fix})") from None
        for rel in _files_under(self.root, folder):
            if rel not in (delta.record, delta.signature) and rel not in record["files"]:
                raise EdgesslError(f"{self.root}: {rel} is not listed in {delta.record}; refusing to load (remove it)")
        return DeltaRecord(record, raw)

    def read_engines(self) -> list[dict]:
        """The engines delta's records, verified; [] when the bundle has none."""
        found = self.read_delta(ENGINES)
        if found is None:
            return []
        record = found.record
        if not isinstance(record.get("engines"), list) or \
                not all(isinstance(e, dict) and e.get("file") in record["files"] for e in record["engines"]):
            raise EdgesslError(f"{self.root / ENGINES.record}: an engine record names no listed file; refusing to load")
        return record["engines"]

    def read_adapt(self, public_key: str | Path | None, required: bool) -> None:
        """Read the adaptation delta into ``adapt``, verified; with ``public_key`` its signature is
        checked when present, and when ``required`` it must be present."""
        found = self.read_delta(ADAPT)
        if found is None:
            return
        record = found.record
        if not _adapt_record(record):
            raise EdgesslError(f"{self.root / ADAPT.record}: not an adaptation record; refusing to load "
                               f"(remove {ADAPT.folder}/ and {ADAPT.remake})")
        spath = self.root / ADAPT.signature
        signature = parse_signature(read_regular(spath, "signature"), spath) if os.path.lexists(spath) else None
        if public_key is not None and (required or signature is not None):
            verify_signature(found.raw, signature, self.root / ADAPT.folder, public_key,
                             "sign it off-device with `edgessl sign --bundle B --key KEY --delta`")
        self.adapt = DeltaRecord(record, found.raw, signature)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def model_name(self, key: str) -> str:
        """The bundle path of the ``key`` precision's model (``EdgesslError`` when the bundle has none)."""
        precisions = self.manifest.get("precisions", {})
        if key not in precisions:
            have = ", ".join(precisions) or "none"
            hint = " (run `edgessl calibrate`)" if key.startswith("int8") else ""
            raise EdgesslError(f"{self.root}: no {key} model in this bundle (has: {have}){hint}")
        return precisions[key]["model"]

    def model_bytes(self, key: str) -> bytes:
        """The verified bytes of the ``key`` precision's model."""
        return self.read(self.model_name(key))

    def recorded_data(self, given: str | None = None) -> str:
        """``given``, else the data the bundle's detector was fitted on, else its classifier's."""
        data = given or self.manifest.get("detector", {}).get("data") or \
            self.manifest.get("classifier", {}).get("provenance", {}).get("data")
        if not data:
            raise EdgesslError("give --data (the bundle does not record the data its detector was fitted on)")
        return str(data)

    def recorded_normal_label(self, given: str | None = None) -> str | None:
        """``given``, else the normal class the bundle's detector was fitted on (None: unlabelled data)."""
        label = given if given is not None else self.manifest.get("detector", {}).get("normal_label")
        return None if label is None else str(label)

    @property
    def cache_dir(self) -> Path:
        """``.NAME.cache`` beside the bundle: what a device derives from it and may rebuild (ONNX
        Runtime's TensorRT engines), outside the sealed bundle."""
        return self.root.parent / f".{self.root.name}.cache"

    @property
    def detector_dir(self) -> str:
        """The detector's folder in the bundle (a relative path)."""
        return self.manifest.get("detector", {}).get("directory", "detector")

    @property
    def head_only(self) -> bool:
        """The bundle has a classifier head and no anomaly detector (a ``classifier`` section, no ``detector``)."""
        return "classifier" in self.manifest and "detector" not in self.manifest

    def detector(self):
        """The bundle's detector, built from the verified bytes of its files."""
        from .detectors import detector_from_bytes

        folder = self.detector_dir
        return detector_from_bytes(self._detector_file("detector.json"), self._detector_file("detector.npz"),
                                   f"{self.root}/{folder}")

    def adapted_detector(self):
        """The adaptation delta's detector (``adapt`` must be loaded), from the verified bytes of its files."""
        from .detectors import detector_from_bytes

        return detector_from_bytes(self.read(f"{ADAPT.folder}/detector.json"), self.read(f"{ADAPT.folder}/detector.npz"),
                                   f"{self.root}/{ADAPT.folder}")

    def _detector_file(self, name: str) -> bytes:
        rel = f"{self.detector_dir}/{name}"
        if rel not in self.manifest.get("files", {}):
            raise EdgesslError(f"{self.root}: no fitted detector ({rel} is not in the bundle); re-export it")
        return self.read(rel)

    def fit_record(self) -> dict:
        """The detector's ``fit.json`` (data, normal label, held-out scores), ``{}`` when there is none."""
        rel = f"{self.detector_dir}/fit.json"
        if rel not in self.manifest.get("files", {}):
            return {}
        record = parse_json(self.read(rel), f"{self.root}/{rel}")
        if not isinstance(record, dict):
            raise EdgesslError(f"{self.root}/{rel}: not a fit record (a JSON object)")
        return record

    def adapt_threshold(self, key: str) -> dict:
        """The adaptation delta's threshold record for the precision ``key`` (``adapt`` loaded)."""
        thresholds, left_out = self.adapt.record["thresholds"], self.adapt.record.get("left_out", {})
        if key in thresholds:
            return thresholds[key]
        where = f"{self.root}: the adaptation delta ({ADAPT.folder}/) holds no {key} threshold"
        if key.startswith("engine-"):
            raise EdgesslError(f"{where}: a TensorRT engine's threshold is re-derived from the engine's own scores "
                               "by `edgessl build-engine`, which adapt cannot do; run the ONNX model (--backend "
                               "ort-tensorrt or ort-cpu) with the delta, or the engine with --no-delta")
        why = left_out.get(key, "it was made without one")
        raise EdgesslError(f"{where} ({why}); re-run `edgessl calibrate`, then `edgessl adapt`, or run with --no-delta")

    def threshold(self, key: str) -> dict:
        thresholds = self.manifest.get("thresholds", {})
        if key not in thresholds:
            have = ", ".join(thresholds) or "none"
            raise EdgesslError(f"{self.root}: no threshold for {key} (has: {have}); re-run the step that makes it")
        return thresholds[key]
