"""tools/benchmark.py at toy sizes: the JSON contract, not the speed (no timing asserts)."""
import json
import os
import subprocess
import sys

from conftest import TOOLS


def _bench(*argv):
    return subprocess.run([sys.executable, os.path.join(TOOLS, "benchmark.py")] + list(argv),
                          capture_output=True, text=True)


def test_data_section_json_smoke():
    res = _bench("data", "--json", "--input-size", "32", "--image-size", "36", "--batch-size",
                 "8", "--batches", "2", "--repeats", "2", "--warmup", "1", "--workers", "1")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)  # the whole of stdout is one JSON object
    assert list(out) == ["data"]
    d = out["data"]
    assert (d["input_size"], d["batch_size"], d["workers"], d["images"]) == (32, 8, 1, 1438)
    for key in ("record_iter", "dataloader", "speedup"):
        assert set(d[key]) == {"train", "val"} and all(v > 0 for v in d[key].values())
    assert abs(d["speedup"]["val"] - d["record_iter"]["val"] / d["dataloader"]["val"]) < 1e-9
    assert d["machine"]["cores"] == os.cpu_count() and "OPENCV" in d["machine"]["features"]


def test_bad_option_is_one_line():
    res = _bench("data", "--batch-size", "0")
    assert res.returncode == 2 and res.stderr == "error: --batch-size must be at least 1\n"


def test_infer_section_json_smoke():
    res = _bench("infer", "--json", "--input-size", "32", "--multiplier", "0.25", "--batch-size",
                 "2", "--repeats", "1", "--warmup", "0", "--infer-images", "1",
                 "--calib-batches", "1")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["infer"]
    variants = ["fp32", "fused", "int8", "onnxruntime", "onnxruntime-weights-as-inputs",
                "gluoncv mobilenet0.25"]
    assert [(r["variant"], r["batch"]) for r in rows] == [(v, b) for b in (1, 2) for v in variants]
    for r in rows:
        assert set(r) == {"variant", "batch", "model", "latency_ms", "ratio_vs_fp32",
                          "ratio_vs_gluoncv"} and r["latency_ms"] > 0
        same_batch = {x["variant"]: x["latency_ms"] for x in rows if x["batch"] == r["batch"]}
        assert abs(r["ratio_vs_fp32"] - r["latency_ms"] / same_batch["fp32"]) < 1e-9
        assert abs(r["ratio_vs_gluoncv"] - r["latency_ms"] / same_batch[variants[-1]]) < 1e-9
    assert rows[0]["model"] == "full-connect-pre-act x0.25 at 32"
    assert rows[-1]["model"] == "gluoncv mobilenet0.25"
