"""Table 1 row by row (count_flops.py --per-layer): the rows are the paper's layers, with
its skips, and they add up to the totals the paper's Tables 2-4 print."""
import json
import os
import subprocess
import sys

import pytest

from mobilenet_skip import count_model, get_model, list_models
from mobilenet_skip.models.flops import layer_table

TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools",
                    "count_flops.py")
IDENTITY = {"Conv_4", "Conv_6", "Conv_8", "Conv_9", "Conv_10", "Conv_11", "Conv_12", "Conv_14"}
PROJECTION = {"Conv_2", "Conv_3", "Conv_5", "Conv_7", "Conv_13"}
# Table 1's output column at 1.0-224
OUTPUTS = {"Conv_1": (112, 112, 32), "Conv_2": (112, 112, 64), "Conv_3": (56, 56, 128),
           "Conv_5": (28, 28, 256), "Conv_7": (14, 14, 512), "Conv_12": (14, 14, 512),
           "Conv_13": (7, 7, 1024), "Conv_14": (7, 7, 1024), "FC": (1000,)}


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("multiplier, size", [(1.0, 224), (0.25, 96)])
def test_rows_add_up_to_the_totals(name, multiplier, size):
    net = get_model(name, multiplier, 1000)
    rows = layer_table(net, size)
    totals = count_model(net, size)
    assert [r["layer"] for r in rows] == (["Conv_%d" % i for i in range(1, 15)]
                                          + ["Avg Pool", "FC"])
    assert sum(r["macs"] for r in rows) == totals["macs"]
    assert sum(r["params"] for r in rows) == totals["params"]


@pytest.mark.parametrize("name", list_models())
def test_rows_carry_the_schemes_skips_and_table1_shapes(name):
    rows = {r["layer"]: r for r in layer_table(get_model(name, 1.0, 1000), 224)}
    connect = ("full" if name.startswith("full") else
               "simple" if name.startswith("simple") else None)
    expected = {layer: ("identity" if connect and layer in IDENTITY else
                        "projection" if connect == "full" and layer in PROJECTION else None)
                for layer in rows}
    assert {layer: r["skip"] for layer, r in rows.items()} == expected
    assert {layer: rows[layer]["output"] for layer in OUTPUTS} == OUTPUTS
    plain = {r["layer"]: r for r in layer_table(get_model("mobilenet", 1.0, 1000), 224)}
    for layer, row in rows.items():  # an identity skip costs nothing, a projection more
        if row["skip"] == "projection":
            assert row["macs"] > plain[layer]["macs"] and row["params"] > plain[layer]["params"]
        else:
            assert (row["macs"], row["params"]) == (plain[layer]["macs"], plain[layer]["params"])


def test_the_tool_prints_the_table_and_the_papers_totals():
    out = subprocess.run([sys.executable, TOOL, "--per-layer", "--model", "full-connect-pre-act"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("full-connect-pre-act x1, 224x224")
    assert sum(line.startswith(("Conv_", "Avg Pool", "FC")) for line in lines) == 16
    assert "Conv_13   7x7x1024       projection" in out
    total = [line for line in lines if line.startswith("total")][0]
    assert "697.2M" in total and "4.91M" in total and "(paper: 698M / 4.9M)" in total
    rows = json.loads(subprocess.run(
        [sys.executable, TOOL, "--per-layer", "--json", "--model", "simple-connect",
         "--multiplier", "0.5", "--input-size", "128"],
        capture_output=True, text=True, check=True).stdout)
    assert sum(layer["macs"] for layer in rows[0]["layers"]) == rows[0]["macs"]
