"""The TensorRT preflight (export/tensorrt_preflight.py) on small hand-written models, each breaking one
rule, and ``edgessl bundle check`` on real bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.export.tensorrt_preflight import check_model, preflight
from runtime_bundle import make_bundle

PROFILE = {"x": ((1, 4, 8, 8), (1, 4, 8, 8), (16, 4, 8, 8))}


def _model(nodes, inits, inputs=None, opset=17, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _conv(bias_dq: bool = False, zp=np.int8(0), axis: int | None = 0, w_scale=None):
    """x -> Q/DQ (per tensor) -> Conv with int8 per-channel weights (DQ); optionally an int32 bias DQ."""
    w = np.ones((4, 4, 3, 3), np.int8)
    inits = {"s": np.array(0.1, np.float32), "zp": np.array(zp), "w": w,
             "ws": np.full(4, 0.01, np.float32) if w_scale is None else w_scale, "wzp": np.zeros(4, np.int8)}
    dq_w = {"axis": axis} if axis is not None else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="x_Q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="x_DQ"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wzp"], ["wd"], name="w_DQ", **dq_w)]
    if bias_dq:
        inits.update(b=np.zeros(4, np.int32), bs=np.full(4, 0.001, np.float32), bzp=np.zeros(4, np.int32))
        nodes.append(helper.make_node("DequantizeLinear", ["b", "bs", "bzp"], ["bd"], name="conv1.bias_DQ", axis=0))
    nodes.append(helper.make_node("Conv", ["xd", "wd", "bd" if bias_dq else "bf"], ["y"], name="conv1",
                                  pads=[1, 1, 1, 1]))
    if not bias_dq:
        inits["bf"] = np.zeros(4, np.float32)
    return _model(nodes, inits)


def _rules(model, versions=("10", "11"), profile=PROFILE):
    return [(f.where, f.rule) for f in check_model(model, versions, profile)]


def test_a_tensorrt_style_qdq_model_passes():
    assert _rules(_conv()) == []


def test_an_int32_dequantize_is_refused_naming_the_node(tmp_path):
    """ONNX Runtime's default int32 bias: the acceptance's deliberately bad model."""
    model = _conv(bias_dq=True)
    assert ("node 'conv1.bias_DQ' (DequantizeLinear)", "R4") in _rules(model)
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(EdgesslError) as info:
        preflight(path, ("10", "11"), PROFILE)
    line = str(info.value)
    assert "\n" not in line and "conv1.bias_DQ" in line and "INT32" in line and "[R4" in line
    assert "QuantizeBias=False" in line and "TensorRT 10.3, TensorRT 11" in line


def test_a_dynamic_dimension_without_a_profile_is_refused_naming_the_input(tmp_path):
    second = helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", 1, "h", "w"])
    model = _model([helper.make_node("Relu", ["x"], ["y"], name="relu"),
                    helper.make_node("Relu", ["mask"], ["z"], name="relu_mask")], {},
                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8]), second],
                   outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                            helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    assert _rules(model) == [("input 'mask'", "R10")]
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(EdgesslError, match=r"input 'mask': dimension 0 \('batch'\) is dynamic and no optimization "
                                           r"profile sets it \[R10"):
        preflight(path, ("10",), PROFILE)
    assert _rules(_conv(), profile={}) == [("input 'x'", "R10")]  # no profile at all
    bad = {"x": ((1, 4, 8, 8), (1, 4, 8, 8), (16, 4, 9, 9))}  # a static dimension the profile changes
    assert set(_rules(_conv(), profile=bad)) == {("input 'x'", "R10")}


@pytest.mark.parametrize("zp, rule", [(np.uint8(0), "R5"), (np.int8(3), "R5")])
def test_asymmetric_or_uint8_zero_points_are_refused(zp, rule):
    found = _rules(_conv(zp=zp))
    assert ("node 'x_Q' (QuantizeLinear)", rule) in found and ("node 'x_DQ' (DequantizeLinear)", rule) in found


def test_per_channel_rules():
    assert ("node 'w_DQ' (DequantizeLinear)", "R7") in _rules(_conv(axis=None))  # the parser reads 0, ONNX 1
    assert ("node 'w_DQ' (DequantizeLinear)", "R7") in _rules(_conv(w_scale=np.full(3, 0.01, np.float32)))
    assert ("node 'w_DQ' (DequantizeLinear)", "R6") in _rules(_conv(w_scale=np.array([0.1, 0, 0.1, 0.1], np.float32)))
    per_channel_act = _model([
        helper.make_node("QuantizeLinear", ["x", "cs", "czp"], ["xq"], name="act_Q", axis=1),
        helper.make_node("DequantizeLinear", ["xq", "cs", "czp"], ["y"], name="act_DQ", axis=1)],
        {"cs": np.full(4, 0.1, np.float32), "czp": np.zeros(4, np.int8)})
    found = _rules(per_channel_act)
    assert ("node 'act_Q' (QuantizeLinear)", "R7") in found  # activations cannot be quantized per channel


def test_ops_domains_opsets_and_constant_inputs():
    contrib = _model([helper.make_node("FusedConv", ["x"], ["y"], name="fused", domain="com.microsoft")], {})
    assert _rules(contrib) == [("node 'fused' (FusedConv)", "R2")]
    unique = _model([helper.make_node("Unique", ["x"], ["y"], name="uniq")], {})
    assert _rules(unique) == [("node 'uniq' (Unique)", "R2")]
    relu21 = _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], {}, opset=21)
    found = check_model(relu21, ("10", "11"), PROFILE)
    assert [(f.where, f.rule, f.versions) for f in found] == [("model", "R1", ["TensorRT 10.3"])]  # 11: up to 25
    pad = _model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")],
                 {"pads": np.zeros(4, np.int64)},
                 inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8]),
                         helper.make_tensor_value_info("axes", TensorProto.INT64, [2])], opset=18)
    profile = {**PROFILE, "axes": ((2,), (2,), (2,))}
    assert [(f.where, f.rule, f.versions) for f in check_model(pad, ("10", "11"), profile)] == \
        [("node 'pad' (Pad)", "R8", ["TensorRT 10.3"])]  # tensor Pad axes from TensorRT 10.4
    pool = _model([helper.make_node("MaxPool", ["x"], ["y", "idx"], name="pool", kernel_shape=[2, 2])], {})
    assert ("node 'pool' (MaxPool)", "R9") in _rules(pool)
    resize = _model([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="rs", mode="cubic")],
                    {"sc": np.array([1, 1, 2, 2], np.float32)})
    assert _rules(resize) == [("node 'rs' (Resize)", "R9")]


def test_bundle_check_on_real_bundles(tmp_path, capsys):
    from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle
    from edgessl.cli import main

    b = make_bundle(tmp_path / "b", "knn")
    calibrate_bundle(CalibrateConfig(bundle=str(b), target="both", method="minmax", num_images=32, holdout_images=40,
                                     max_auroc_change=1.0))  # the gate is not what this test is about
    assert main(["bundle", "check", "--bundle", str(b)]) == 0
    out = capsys.readouterr().out
    assert "model.onnx: passes" in out and "model.int8-tensorrt.onnx: passes" in out and "int8-cpu" not in out
    # the CPU model (uint8, asymmetric, int32 biases) put where TensorRT builds from: refused, naming a node
    bad = shutil.copytree(b, tmp_path / "bad")
    shutil.copy(bad / "model.int8-cpu.onnx", bad / "model.int8-tensorrt.onnx")
    from edgessl.edge_runtime.bundle import Bundle, seal

    seal(bad, Bundle.load(bad, verify=False).manifest)
    assert main(["bundle", "check", "--bundle", str(bad), "--tensorrt", "10"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "model.int8-tensorrt.onnx would not parse in TensorRT: node '" in err[0] and "[R" in err[0]
    assert main(["bundle", "check", "--bundle", str(bad), "--json"]) == 2
    summary = json.loads(capsys.readouterr().out)
    found = summary["models"]["model.int8-tensorrt.onnx"]
    assert summary["models"]["model.onnx"] == [] and {"R4", "R5"} <= {f["rule"] for f in found}
    assert main(["bundle", "check", "--bundle", str(b), "--tensorrt", "9"]) == 2
    assert "the preflight knows TensorRT lines 10, 11" in capsys.readouterr().err
