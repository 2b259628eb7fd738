"""The five networks against the paper's Table 1 and Tables 2-4, and gluoncv parity."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

import mobilenet_skip as ms
from mobilenet_skip.models import DWBlock

from conftest import ROOT, TOOLS

PAPER_NAMES = ["mobilenet", "simple-connect", "full-connect", "simple-connect-pre-act",
               "full-connect-pre-act"]
# The per-variant tests run over the registry, so a registered variant is tested unedited.
NAMES = ms.list_models()

# Table 1 of the paper, transcribed: block -> (simple-connect skip, full-connect skip).
PAPER_TABLE1 = {
    "block2": (None, "projection"), "block3": (None, "projection"),
    "block4": ("identity", "identity"), "block5": (None, "projection"),
    "block6": ("identity", "identity"), "block7": (None, "projection"),
    "block8": ("identity", "identity"), "block9": ("identity", "identity"),
    "block10": ("identity", "identity"), "block11": ("identity", "identity"),
    "block12": ("identity", "identity"), "block13": (None, "projection"),
    "block14": ("identity", "identity"),
}
# Output shape (channels, spatial side at 224) of each block, Table 1's second column.
PAPER_SHAPES = {"block2": (64, 112), "block3": (128, 56), "block4": (128, 56),
                "block5": (256, 28), "block6": (256, 28), "block7": (512, 14),
                "block8": (512, 14), "block9": (512, 14), "block10": (512, 14),
                "block11": (512, 14), "block12": (512, 14), "block13": (1024, 7),
                "block14": (1024, 7)}


def _init(net, seed=0):
    mx.random.seed(seed)
    net.initialize(mx.init.MSRAPrelu())
    return net


def _randomise_bn(net):
    """Give every BN non-trivial statistics so that BN placement changes the output."""
    for name, p in net.collect_params().items():
        if name.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.random.uniform(0.5, 1.5, shape=p.shape))
        elif name.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.random.normal(0, 0.2, shape=p.shape))


def test_list_models_names():
    assert ms.list_models()[:len(PAPER_NAMES)] == PAPER_NAMES


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        ms.get_model("mobilenet-v3")
    for name in NAMES:
        assert name in str(err.value)


def test_a_registered_variant_is_built_and_run_by_name(monkeypatch):
    """A new variant is one registry entry: get_model then builds, names and runs it."""
    from mobilenet_skip import models
    monkeypatch.setattr(models.registry, "VARIANTS", dict(models.VARIANTS))
    key = models.register_variant("Full_Connect_Post", connect="full", preact=False)
    assert key == "full-connect-post" and ms.list_models()[-1] == key
    net = _init(ms.get_model("full_connect_post", multiplier=0.25, classes=7))
    ref = _init(ms.get_model("full-connect", multiplier=0.25, classes=7))
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    assert net.variant == key and net(x).shape == (2, 7)
    np.testing.assert_allclose(net(x).asnumpy(), ref(x).asnumpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="registered already"):
        models.register_variant(key, connect="full")
    with pytest.raises(ValueError, match="connect must be"):
        models.register_variant("diagonal", connect="diagonal")


def test_underscore_alias():
    assert ms.get_model("full_connect_pre_act", multiplier=0.25).variant == "full-connect-pre-act"


@pytest.mark.parametrize("bad", [0, -1.0, 0.01])
def test_bad_multiplier(bad):
    with pytest.raises(ValueError, match="multiplier"):
        ms.get_model("mobilenet", multiplier=bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("multiplier,size", [(0.25, 32), (0.5, 64), (0.75, 97)])
def test_output_shape(name, multiplier, size):
    net = _init(ms.get_model(name, multiplier=multiplier, classes=7))
    out = net(mx.nd.random.normal(shape=(2, 3, size, size)))
    assert out.shape == (2, 7)
    assert np.isfinite(out.asnumpy()).all()


def test_default_is_1000_way_at_224():
    net = _init(ms.get_model("full-connect-pre-act"))
    assert net(mx.nd.zeros((1, 3, 224, 224))).shape == (1, 1000)


@pytest.mark.parametrize("name", NAMES)
def test_block_shapes_match_table1(name):
    net = _init(ms.get_model(name))
    x = net.stem(mx.nd.zeros((1, 3, 224, 224)))
    assert x.shape == (1, 32, 112, 112)  # Conv_1
    for block_name, block in zip(net.block_names, net.blocks):
        x = block(x)
        channels, side = PAPER_SHAPES[block_name]
        assert x.shape == (1, channels, side, side), block_name


@pytest.mark.parametrize("name", NAMES)
def test_skip_placement_matches_table1(name):
    net = ms.get_model(name, multiplier=0.25)
    assert net.block_names == list(PAPER_TABLE1)
    column = {"none": None, "simple": 0, "full": 1}[ms.VARIANTS[name]["connect"]]
    for block_name, block in zip(net.block_names, net.blocks):
        expected = None if column is None else PAPER_TABLE1[block_name][column]
        assert block.skip == expected, (name, block_name)
        children = dict(block._children)
        assert ("proj" in children and children["proj"] is not None) == (expected == "projection")
        assert (block.pre_bn is not None) == ms.VARIANTS[name]["preact"]


@pytest.mark.parametrize("name", NAMES)
def test_hybridized_equals_imperative(name):
    net = _init(ms.get_model(name, multiplier=0.25, classes=10))
    _randomise_bn(net)
    x = mx.nd.random.normal(shape=(3, 3, 64, 64))
    imperative = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    hybrid = net(x).asnumpy()
    assert np.abs(imperative).max() > 1e-3
    np.testing.assert_allclose(hybrid, imperative, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("skip", [None, "identity", "projection"])
def test_block_equations(skip, preact):
    """Eq. (1)-(2): original y = ReLU(h(x) + F(x)); pre-act x + F(BN-ReLU(x))."""
    channels, stride = (8, 1) if skip == "identity" else (16, 2)
    block = DWBlock(8, channels, stride, skip=skip, preact=preact)
    block.initialize(mx.init.MSRAPrelu())
    _randomise_bn(block)
    x = mx.nd.random.normal(shape=(2, 8, 10, 10))
    relu = mx.nd.relu
    a = relu(block.pre_bn(x)) if preact else x
    h = {None: 0, "identity": x, "projection": block.proj(a) if skip == "projection" else 0}[skip]
    y = block.body(a) + h
    expected = y if preact else relu(y)
    np.testing.assert_allclose(block(x).asnumpy(), expected.asnumpy(), rtol=1e-5, atol=1e-6)
    # original activation: the residual branch ends in BN; pre-act: in the pw conv
    assert (block.body.pw_bn is None) == preact
    if skip == "projection":
        assert (block.proj.bn is None) == preact


def test_identity_skip_requires_matching_shapes():
    with pytest.raises(ValueError, match="identity"):
        DWBlock(8, 16, 1, skip="identity")


def _param_shapes(net):
    return {k: v.shape for k, v in net._collect_params_with_prefix().items()}


def test_simple_connect_has_mobilenets_parameters():
    assert _param_shapes(ms.get_model("simple-connect")) == _param_shapes(ms.get_model("mobilenet"))


def test_parameter_names_are_readable():
    names = list(_param_shapes(ms.get_model("full-connect")))
    assert names[0] == "stem.conv.weight"
    assert "block4.body.dw.weight" in names and "block2.proj.conv.weight" in names
    assert "output.weight" in names
    assert not any(n.startswith("block4.proj") for n in names)  # identity skips are free


@pytest.mark.parametrize("name,macs,params", [
    ("mobilenet", 569e6, 4.2e6), ("simple-connect", 569e6, 4.2e6),
    ("simple-connect-pre-act", 569e6, 4.2e6),
    ("full-connect", 698e6, 4.9e6), ("full-connect-pre-act", 698e6, 4.9e6)])
def test_mult_adds_and_params_match_tables_2_to_4(name, macs, params):
    counts = ms.count_model(ms.get_model(name), 224)
    assert abs(counts["macs"] - macs) < 1e6, counts["macs"]
    assert round(counts["params"] / 1e6, 1) == params / 1e6, counts["params"]


@pytest.mark.parametrize("multiplier,macs,params", [
    (0.75, 325e6, 2.6e6), (0.5, 149e6, 1.3e6), (0.25, 41e6, 0.5e6)])
def test_width_multipliers_match_mobilenet_table6(multiplier, macs, params):
    counts = ms.count_model(ms.get_model("mobilenet", multiplier=multiplier), 224)
    assert round(counts["macs"] / 1e6) == macs / 1e6
    assert round(counts["params"] / 1e6, 1) == params / 1e6


def test_skips_add_exactly_the_projection_cost():
    """full-connect minus mobilenet = the five 1x1 projections, counted by hand."""
    base = ms.count_model(ms.get_model("mobilenet"))
    full = ms.count_model(ms.get_model("full-connect"))
    # (in, out, output side) of Conv_2, _3, _5, _7, _13 at 224
    projections = [(32, 64, 112), (64, 128, 56), (128, 256, 28), (256, 512, 14), (512, 1024, 7)]
    assert full["macs"] - base["macs"] == sum(i * o * s * s for i, o, s in projections)
    assert full["params"] - base["params"] == sum(i * o for i, o, _ in projections)


def test_counts_follow_input_size():
    small = ms.count_model(ms.get_model("mobilenet"), 112)
    big = ms.count_model(ms.get_model("mobilenet"), 224)
    assert small["params"] == big["params"]
    assert small["macs"] < big["macs"] / 3


def test_too_small_or_wrong_channel_input_is_clear():
    net = _init(ms.get_model("mobilenet", multiplier=0.25))
    with pytest.raises(ValueError, match="at least 32x32"):
        net(mx.nd.zeros((1, 3, 16, 16)))
    with pytest.raises(ValueError, match="3-channel"):
        net(mx.nd.zeros((1, 1, 64, 64)))


class _TaggedNorm(nn.BatchNorm):
    pass


def test_norm_layer_and_kwargs_are_threaded_through():
    net = ms.get_model("full-connect-pre-act", multiplier=0.25, norm_layer=_TaggedNorm,
                       norm_kwargs={"momentum": 0.5, "epsilon": 1e-3})
    norms = []
    net.apply(lambda b: norms.append(b) if isinstance(b, nn.BatchNorm) else None)
    # pre-act: pre_bn and dw_bn in each block, plus the final post_bn (projections have none)
    assert len(norms) == 13 * 2 + 1
    for bn in norms:
        assert isinstance(bn, _TaggedNorm)
        assert bn._kwargs["momentum"] == 0.5 and bn._kwargs["eps"] == 1e-3


def test_recipe_bn_keys_become_norm_kwargs():
    kwargs = ms.models.norm_kwargs_from({"bn_momentum": 0.9997, "bn_eps": 1e-3})
    assert kwargs == {"momentum": 0.9997, "epsilon": 1e-3}
    net = ms.get_model("mobilenet", multiplier=0.25, norm_kwargs=kwargs)
    norms = []
    net.apply(lambda b: norms.append(b) if isinstance(b, nn.BatchNorm) else None)
    assert len(norms) == 27 and {(bn._kwargs["momentum"], bn._kwargs["eps"]) for bn in norms} == {
        (0.9997, 1e-3)}


def _gluoncv_file(tmp_path, name):
    from gluoncv.model_zoo import get_model as gcv_get_model
    gnet = gcv_get_model(name)
    gnet.initialize(mx.init.MSRAPrelu())
    gnet(mx.nd.zeros((1, 3, 32, 32)))
    _randomise_bn(gnet)
    path = str(tmp_path / (name + ".params"))
    gnet.save_parameters(path)
    return gnet, path


@pytest.mark.parametrize("multiplier,gname", [(1.0, "mobilenet1.0"), (0.25, "mobilenet0.25")])
def test_mobilenet_equals_gluoncv_after_loading(tmp_path, multiplier, gname):
    gnet, path = _gluoncv_file(tmp_path, gname)
    net = ms.get_model("mobilenet", multiplier=multiplier)
    assert ms.load_gluoncv_params(net, path) == []
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    ref = gnet(x).asnumpy()
    assert np.abs(ref).max() > 1e-2
    np.testing.assert_allclose(net(x).asnumpy(), ref, atol=1e-5, rtol=0)
    net.hybridize()
    np.testing.assert_allclose(net(x).asnumpy(), ref, atol=1e-5, rtol=0)


def test_gluoncv_weights_into_skip_variants(tmp_path):
    gnet, path = _gluoncv_file(tmp_path, "mobilenet0.25")
    simple = ms.get_model("simple-connect", multiplier=0.25)
    assert ms.load_gluoncv_params(simple, path) == []
    full = ms.get_model("full-connect", multiplier=0.25)
    left = ms.load_gluoncv_params(full, path, init=mx.init.MSRAPrelu())
    assert left and all(".proj." in name for name in left)
    assert {n.split(".")[0] for n in left} == {"block2", "block3", "block5", "block7", "block13"}
    # the loaded part equals the source; init= initialised only the projections
    np.testing.assert_array_equal(full.block4.body.dw.weight.data().asnumpy(),
                                  simple.block4.body.dw.weight.data().asnumpy())
    assert full(mx.nd.zeros((1, 3, 32, 32))).shape == (1, 1000)  # init= covered the rest
    assert float(full.block2.proj.conv.weight.data().abs().sum().asscalar()) > 0
    assert (full.block2.proj.bn.gamma.data().asnumpy() == 1).all()  # BN keeps its own init


def test_gluoncv_load_errors(tmp_path):
    _, path = _gluoncv_file(tmp_path, "mobilenet0.25")
    with pytest.raises(ValueError, match="pre-act"):
        ms.load_gluoncv_params(ms.get_model("simple-connect-pre-act", multiplier=0.25), path)
    with pytest.raises(ValueError, match="multiplier=0.25"):
        ms.load_gluoncv_params(ms.get_model("mobilenet", multiplier=0.5), path)
    with pytest.raises(ValueError, match="load_output=False"):
        ms.load_gluoncv_params(ms.get_model("mobilenet", multiplier=0.25, classes=10), path)
    net = ms.get_model("mobilenet", multiplier=0.25, classes=10)
    assert ms.load_gluoncv_params(net, path, load_output=False) == ["output.weight", "output.bias"]
    bad = tmp_path / "junk.params"
    bad.write_bytes(b"not a params file")
    with pytest.raises(ValueError, match="cannot read"):
        ms.load_gluoncv_params(ms.get_model("mobilenet", multiplier=0.25), str(bad))


@pytest.mark.slow
def test_count_flops_cli_json():
    out = subprocess.run([sys.executable, os.path.join(TOOLS, "count_flops.py"), "--json",
                          "--multiplier", "0.5", "--model", "mobilenet", "--model",
                          "full-connect"], capture_output=True, text=True, check=True).stdout
    rows = json.loads(out)
    assert [r["model"] for r in rows] == ["mobilenet", "full-connect"]
    assert all(set(r) == {"model", "multiplier", "input_size", "macs", "params"} for r in rows)
    assert rows[0]["macs"] == ms.count_model(ms.get_model("mobilenet", 0.5))["macs"]
    assert rows[1]["macs"] > rows[0]["macs"]


@pytest.mark.slow
def test_count_flops_cli_table_and_errors():
    tool = os.path.join(TOOLS, "count_flops.py")
    out = subprocess.run([sys.executable, tool], capture_output=True, text=True, check=True).stdout
    assert "698M / 4.9M" in out and "BN, ReLU" in out
    bad = subprocess.run([sys.executable, tool, "--input-size", "16"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "at least 32" in bad.stderr
    bad = subprocess.run([sys.executable, tool, "--model", "resnet"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_import_without_mxnet_is_one_clear_line(tmp_path):
    fake = tmp_path / "mxnet"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named mxnet')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    # importing the package loads no MXNet; the first name that needs it says how to get it
    res = subprocess.run([sys.executable, "-c", "import mobilenet_skip"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-c", "from mobilenet_skip import get_model"], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "pip install mxnet==1.9.1" in res.stderr
    res = subprocess.run([sys.executable, os.path.join(TOOLS, "count_flops.py")], env=env,
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "pip install mxnet==1.9.1" in res.stderr


# --- fused BatchNorm-ReLU (CPU training with oneDNN) ---------------------------------------

def _graph(net):
    """The symbol of ``net`` as nodes and, per node index, how many nodes consume it."""
    nodes = json.loads(net(mx.sym.var("data")).tojson())["nodes"]
    consumers = {}
    for node in nodes:
        for src in node["inputs"]:
            consumers.setdefault(src[0], []).append(node)
    return nodes, consumers


def _bn_relu_pairs(nodes, consumers):
    """Names of the BatchNorms whose only consumer is a ReLU."""
    return {n["name"] for i, n in enumerate(nodes) if n["op"] == "BatchNorm"
            and [c["op"] for c in consumers.get(i, [])] == ["Activation"]
            and consumers[i][0]["attrs"]["act_type"] == "relu"}


@pytest.mark.parametrize("name", NAMES)
def test_fusion_covers_exactly_the_bn_relu_pairs(name):
    net = ms.get_model(name, multiplier=0.25, classes=10)
    nodes, consumers = _graph(net)
    pairs = _bn_relu_pairs(nodes, consumers)
    relus = sum(1 for n in nodes if n["op"] == "Activation")
    assert ms.models.fused_count(net) == 0  # built unfused: the portable graph
    assert ms.models.set_bn_relu_fusion(net, True) == len(pairs) > 0
    fused_nodes, fused_consumers = _graph(net)
    assert {n["name"] for n in fused_nodes if n["op"] == "_contrib_BatchNormWithReLU"} == pairs
    assert not _bn_relu_pairs(fused_nodes, fused_consumers)  # none left apart
    assert sum(1 for n in fused_nodes if n["op"] == "Activation") == relus - len(pairs)
    if name in ("simple-connect", "full-connect"):
        # a ReLU after a skip sum stays: its input is the sum, not a BatchNorm
        assert any(n["op"] == "Activation" for n in fused_nodes)
    assert ms.models.set_bn_relu_fusion(net, False) == len(pairs)
    # unfused again, op for op (aux-state versions are numbered anew by each trace)
    assert [(n["op"], n["name"]) for n in _graph(net)[0]] == [(n["op"], n["name"]) for n in nodes]


def test_a_norm_layer_of_its_own_is_never_fused():
    class OwnNorm(nn.BatchNorm):
        def hybrid_forward(self, F, x, *args):  # e.g. SyncBatchNorm: ignores fuse_relu
            return super(OwnNorm, self).hybrid_forward(F, x, *args)

    def fused(norm_layer):
        net = ms.get_model("full-connect-pre-act", 0.25, norm_layer=norm_layer)
        return ms.models.set_bn_relu_fusion(net, True)

    assert fused(_TaggedNorm) == 27  # a BatchNorm subclass that keeps Gluon's forward
    assert fused(OwnNorm) == 0


def _training_step(name, fuse, params_file):
    """One hybridized training step of ``name`` from the saved state: loss, gradients,
    BN running statistics after it, and an inference output."""
    from mobilenet_skip.config import recipes as config
    from mobilenet_skip.train import net as train_net

    cfg = config.resolve(None, dict(model=name, multiplier=0.25, classes=10, input_size=32,
                                    fuse_bn_relu=fuse))
    net = ms.get_model(name, 0.25, 10)
    net.load_parameters(params_file)
    fused = train_net.hybridize(net, cfg)
    mx.random.seed(1)
    x = mx.nd.random.normal(shape=(8, 3, 32, 32))
    y = mx.nd.array(np.arange(8) % 10)
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    with mx.autograd.record():
        loss = loss_fn(net(x), y).mean()
    loss.backward()
    params = net._collect_params_with_prefix()  # structural names, the same in both nets
    grads = {k: p.grad().asnumpy() for k, p in params.items() if p.grad_req != "null"}
    stats = {k: p.data().asnumpy() for k, p in params.items() if "running" in k}
    return fused, loss.asscalar(), grads, stats, net(x).asnumpy()


@pytest.mark.parametrize("name", NAMES)
def test_one_fused_training_step_equals_the_unfused_one(name, tmp_path):
    from mobilenet_skip.config import recipes as config
    from mobilenet_skip.train import net as train_net

    cfg = config.resolve(None, dict(model=name, multiplier=0.25, classes=10))
    assert cfg["init"] == "msra"
    net = train_net.init_net(ms.get_model(name, 0.25, 10), cfg, [mx.cpu()])
    net(mx.nd.zeros((1, 3, 32, 32)))
    _randomise_bn(net)
    path = str(tmp_path / "start.params")
    net.save_parameters(path)
    n_fused, loss_f, grads_f, stats_f, out_f = _training_step(name, True, path)
    n_plain, loss_u, grads_u, stats_u, out_u = _training_step(name, False, path)
    assert n_fused == ms.models.set_bn_relu_fusion(ms.get_model(name, 0.25, 10), True) > 0
    assert n_plain == 0
    assert loss_f == pytest.approx(loss_u, rel=1e-5)
    assert set(grads_f) == set(grads_u)
    for k in grads_u:
        scale = np.abs(grads_u[k]).max()
        assert scale > 0, k
        np.testing.assert_allclose(grads_f[k], grads_u[k], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=k)
    for k in stats_u:
        np.testing.assert_allclose(stats_f[k], stats_u[k], rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(out_f, out_u, rtol=1e-5, atol=1e-5)


def test_fusion_is_used_only_where_the_operator_has_a_kernel(monkeypatch):
    from mobilenet_skip.config import recipes as config
    from mobilenet_skip.models import fusion
    from mobilenet_skip.train import net as train_net

    assert fusion.fusion_supported([mx.cpu()]) == (True, "")
    assert not fusion.fusion_supported([mx.cpu(), mx.gpu(0)])[0]
    assert "GPU" in fusion.fusion_supported([mx.gpu(0)])[1]
    assert not fusion.fusion_supported([mx.cpu()], "float16")[0]
    monkeypatch.setenv("MXNET_MKLDNN_ENABLED", "0")
    assert "MXNET_MKLDNN_ENABLED" in fusion.fusion_supported([mx.cpu()])[1]
    monkeypatch.delenv("MXNET_MKLDNN_ENABLED")

    class NoOneDNN(object):
        def is_enabled(self, feature):
            return feature != "MKLDNN"

    monkeypatch.setattr(fusion.mx.runtime, "Features", NoOneDNN)
    assert "oneDNN" in fusion.fusion_supported([mx.cpu()])[1]
    cfg = config.resolve(None, dict(model="simple-connect-pre-act", multiplier=0.25))
    net = train_net.init_net(ms.get_model("simple-connect-pre-act", 0.25), cfg, [mx.cpu()])
    assert train_net.choose_fusion(net, cfg) == 0 and ms.models.fused_count(net) == 0
    monkeypatch.undo()
    assert train_net.choose_fusion(net, cfg) == 27 == ms.models.fused_count(net)
    assert train_net.choose_fusion(net, cfg.replace(fuse_bn_relu=False)) == 0
    assert ms.models.fused_count(net) == 0
