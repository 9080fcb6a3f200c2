"""What the TensorRT-target Q/DQ recipe changes, measured on ONNX Runtime (CPU): the model before issue 23,
the same model with int32 biases, and the one calibrate writes now, from the same activation ranges.

    python benchmarks/bench_trt_qdq.py --bundle BUNDLE [--method entropy] [--num-images 256]
                                       [--holdout-images 512] [--runs 30] [--threads 2]

* ``before``: ONNX Runtime's quantizer as edgessl called it before: int32 biases (``QuantizeBias``
  default), Q/DQ on both inputs of every Add, pairs shared between consumers;
* ``int32 biases``: today's placement (a pair per consumer, the residual Add input only) with int32 biases;
* ``now``: today's TensorRT target, biases float (``QuantizeBias=False``).

Per model: how many nodes TensorRT's parser would refuse (the preflight, TensorRT 10.3 and 11),
the embedding cosine against fp32 on the held-out images (mean, 5th percentile), the AUROC, and the
median latency at batch 1 and 16 (after warm-up). One table, one run.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench_int8 import median_ms


def _before(pre: Path, ranges: dict, out: Path) -> None:
    """The TensorRT-target model as ``calibration/qdq.py`` wrote it before issue 23."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    ops = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Add"]
    data = {n: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for n, (lo, hi) in ranges.items()}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        quantize_static(str(pre), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=True, reduce_range=False, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "OpTypesToExcludeOutputQuantization": ops},
                        calibration_cache_path=str(cache))


def main() -> None:
    import onnxruntime as ort

    from edgessl.calibration.calib_data import calibration_images
    from edgessl.calibration.collect_ranges import collect_stats, tensor_ranges
    from edgessl.calibration.compare import compare
    from edgessl.calibration.qdq import TARGETS, pre_process, write_qdq
    from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
    from edgessl.edge_runtime.bundle import Bundle
    from edgessl.edge_runtime.data.holdout import held_out
    from edgessl.edge_runtime.engines import engine_profile
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.tensorrt_preflight import check_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--num-images", type=int, default=256)
    ap.add_argument("--holdout-images", type=int, default=512)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    bundle = Bundle.load(args.bundle)
    m = bundle.manifest
    spec = PreprocessSpec.from_dict(m["preprocess"])
    data, label = bundle.recorded_data(), bundle.recorded_normal_label()
    detector = bundle.detector()
    hold = held_out(data, spec, label, bundle.fit_record(), args.holdout_images)
    images = np.concatenate([hold.normals, hold.test])
    labels = None if hold.test_labels is None else np.r_[np.full(len(hold.normals), -1), hold.test_labels]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    profile = engine_profile(m, (1, 1, 16))
    with tempfile.TemporaryDirectory(prefix="bench-trt-qdq-") as tmp:
        work = Path(tmp)
        pre, fp32 = work / "pre.onnx", work / "fp32.onnx"
        fp32.write_bytes(bundle.model_bytes("fp32"))
        pre_process(fp32, pre)
        x_cal = calibration_images(data, spec, label, args.num_images)
        stats = collect_stats(pre, x_cal, histograms=args.method != "minmax")
        ranges = tensor_ranges(stats, args.method, keep_full=(m["model"]["input"]["name"],))
        models = {"fp32": fp32, "before": work / "before.onnx",
                  "int32 biases": work / "int32.onnx", "now": work / "now.onnx"}
        _before(pre, ranges, models["before"])
        write_qdq(pre, ranges, replace(TARGETS["tensorrt"], quantize_bias=True), models["int32 biases"])
        write_qdq(pre, ranges, TARGETS["tensorrt"], models["now"])
        ref = run_batches(cpu_session(models["fp32"]), images)
        ref_scores = np.asarray(detector.score(ref).raw_scores, np.float64)
        print(f"bundle {args.bundle}: {data}, input {m['model']['input']['shape']}, {len(images)} held-out images "
              f"({len(hold.normals)} normals), {args.method} ranges from {len(x_cal)} images; ONNX Runtime "
              f"{ort.__version__} CPU, {args.threads} threads, median of {args.runs} runs")
        print(f"{'model':<14}{'refused':>8}{'cos mean':>10}{'cos p5':>9}{'AUROC':>8}{'bs1 ms':>8}{'bs16 ms':>9}")
        for name, path in models.items():
            got = run_batches(cpu_session(path), images)
            fig = compare(ref, got, ref_scores, np.asarray(detector.score(got).raw_scores, np.float64), labels)
            refused = len({f.where for f in check_file(path, profile=profile)})
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            ms = [median_ms(session, images[:b], args.warmup, args.runs) for b in (1, 16)]
            auroc = fig.get("auroc_int8", float("nan"))
            print(f"{name:<14}{refused:>8}{fig['embedding_cosine_mean']:>10.5f}{fig['embedding_cosine_p5']:>9.5f}"
                  f"{auroc:>8.4f}{ms[0]:>8.2f}{ms[1]:>9.2f}")


if __name__ == "__main__":
    main()
