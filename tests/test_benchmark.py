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
