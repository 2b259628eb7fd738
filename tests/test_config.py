"""Recipes: composition, provenance comments, validation and flag overrides."""
import argparse
import os
import re
import shutil

import pytest

from mobilenet_skip.config import recipes as config, flags
from mobilenet_skip.config.recipe import KEYS, SPECS, Recipe
from mobilenet_skip.config.values import coerce
from mobilenet_skip.data.preprocess import DEFAULT as VAL, KEYS as VAL_KEYS
from mobilenet_skip.errors import UserError
from mobilenet_skip.models import list_models

from conftest import ROOT, call_tool

RECIPES = os.path.join(ROOT, "recipes")


def test_paper_settings_resolve():
    cfg = config.resolve(None, {"model": "full-connect-pre-act"})
    assert cfg["recipe"] == os.path.join(RECIPES, "imagenet.yaml")
    expected = {"batch_size": 32, "num_epochs": 100, "optimizer": "sgd", "momentum": 0.9,
                "lr": 0.045, "lr_mode": "exponential", "lr_decay": 0.94, "lr_decay_period": 2,
                "label_smoothing": 0.1, "clip_gradient": 2.0, "wd": 4e-5, "no_wd_dw_bn": True,
                "rmsprop_decay": 0.9, "rmsprop_eps": 1.0, "input_size": 224,
                "crop_ratio": 0.875, "model": "full-connect-pre-act", "multiplier": 1.0}
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["save_dir"] == "runs/full-connect-pre-act"


@pytest.mark.parametrize("name", sorted(os.listdir(os.path.join(ROOT, "recipes"))))
def test_every_recipe_resolves_and_names_its_model(name):
    cfg = config.resolve(os.path.join(RECIPES, name))
    stem = name[:-len(".yaml")]
    if stem in list_models():  # a model's own recipe exists only for that model
        assert cfg["model"] == stem


@pytest.mark.parametrize("model", list_models())
def test_every_model_trains_from_the_imagenet_recipe(model):
    cfg = config.resolve(None, {"model": model})
    paper = config.resolve(os.path.join(RECIPES, "imagenet.yaml"), {"model": model})
    assert cfg == paper and cfg["model"] == model and cfg["save_dir"] == "runs/" + model
    assert cfg["classes_from"] is None  # the data's synsets decide the class count


def test_a_model_recipe_wins_where_one_exists(tmp_path, monkeypatch):
    shutil.copy(os.path.join(RECIPES, "imagenet.yaml"), str(tmp_path))
    (tmp_path / "simple-connect.yaml").write_text("base: imagenet.yaml\nlr: 0.01\n")
    monkeypatch.setattr(config, "RECIPE_DIR", str(tmp_path))
    own = config.resolve(None, {"model": "simple-connect"})
    assert own["recipe"] == str(tmp_path / "simple-connect.yaml") and own["lr"] == 0.01
    other = config.resolve(None, {"model": "mobilenet"})
    assert other["recipe"] == str(tmp_path / "imagenet.yaml") and other["lr"] == 0.045
    assert (own["model"], other["model"]) == ("simple-connect", "mobilenet")


def test_model_flag_alone_uses_the_imagenet_recipe(capsys):
    code, out, _ = call_tool(capsys, "train_imagenet", "--model", "simple-connect",
                             "--print-config")
    assert code == 0 and "recipe %s)" % os.path.join(RECIPES, "imagenet.yaml") in out
    assert re.search(r"^  model +\"simple-connect\"$", out, re.M), out


def test_every_imagenet_key_names_its_source():
    with open(os.path.join(RECIPES, "imagenet.yaml")) as f:
        lines = [l for l in f if re.match(r"^[a-z_]+:", l)]
    assert len(lines) > 20
    for line in lines:
        comment = line.partition("#")[2]
        assert re.search(r"paper|Inception-v3|MobileNet v1|our choice", comment), line


def test_base_plus_overrides(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: %s\nlr: 0.1\nmodel: mobilenet\n" % os.path.join(RECIPES, "imagenet.yaml"))
    cfg = config.resolve(str(child), {"lr_mode": "cosine"})
    assert cfg["lr"] == 0.1 and cfg["model"] == "mobilenet" and cfg["lr_mode"] == "cosine"
    assert cfg["lr_decay"] == 0.94  # from the base


def test_unknown_key_in_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: imagenet.yaml\nlearning_rate: 0.1\n")
    with pytest.raises(UserError, match="unknown key 'learning_rate' in recipe .*bad.yaml"):
        config.resolve(str(bad))


def test_base_cycle_and_missing_file(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("base: b.yaml\n")
    b.write_text("base: a.yaml\n")
    with pytest.raises(UserError, match="cycle"):
        config.resolve(str(a))
    with pytest.raises(UserError, match="not found"):
        config.resolve(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("overrides,pattern", [
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"lr": -1}, "lr must be positive"),
    ({"model": "resnet"}, "unknown model 'resnet'"),
    ({"batch_size": "many"}, "batch_size must be a int"),
    ({"export_epoch": "first"}, "export_epoch must be one of last | best"),
    ({"bn_eps": -1e-3}, "bn_eps must be positive"),
    ({"preprocess_threads": "0"}, "preprocess_threads must be a positive number or auto"),
])
def test_bad_values_are_clear(overrides, pattern):
    with pytest.raises(UserError, match=pattern):
        config.resolve(os.path.join(RECIPES, "imagenet.yaml"), overrides)


def test_flags_cover_every_key_and_override():
    parser = flags.add_flags(argparse.ArgumentParser(allow_abbrev=False))
    args = parser.parse_args(["--lr-mode", "step", "--lr-decay-epochs", "30,60",
                              "--rand-mirror", "false", "--multiplier", "0.5"])
    assert flags.flag_overrides(args) == {"lr_mode": "step", "lr_decay_epochs": [30, 60],
                                           "rand_mirror": False, "multiplier": 0.5}
    for key in config.SCHEMA:
        assert "--" + key.replace("_", "-") in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--learning-rate", "0.1"])


def test_help_lists_the_registered_optimizers_lr_modes_and_models(monkeypatch, capsys):
    """train_imagenet.py --help reads the registries when it is built: an optimizer, lr mode
    or variant registered after import is listed beside the shipped ones."""
    from mobilenet_skip import models
    from mobilenet_skip.optim import rules
    monkeypatch.setitem(rules.OPTIMIZERS, "toy-opt", rules.OPTIMIZERS["sgd"])
    monkeypatch.setitem(rules.LR_MODES, "toy-mode", rules.LR_MODES["cosine"])
    monkeypatch.setattr(models.registry, "VARIANTS", dict(models.VARIANTS))
    models.register_variant("toy-variant", connect="full", preact=True)
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping (argparse breaks lines at hyphens)
    code, out, _ = call_tool(capsys, "train_imagenet", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "--optimizer STR sgd | nag | rmsprop | toy-opt (rmsprop:" in text
    assert "--lr-mode STR exponential | step | cosine | toy-mode (schema" in text
    assert "full-connect-pre-act | toy-variant" in text


def test_dump_round_trips(tmp_path):
    cfg = config.resolve(None, {"model": "mobilenet", "lr": 0.2})
    path = str(tmp_path / "config.yaml")
    config.dump(cfg, path)
    back = config.load_dumped(path)
    assert all(back[k] == cfg[k] for k in config.SCHEMA)


# --- the Recipe: every key declared once (type, default, help, checks) ---------------

def test_every_key_is_one_typed_field_of_the_recipe():
    """A key's default is of its declared type (so a flag parses like the YAML), SCHEMA
    lists exactly the fields, and the validation transform's defaults are Preprocessing's."""
    assert tuple(config.SCHEMA) == KEYS and len(KEYS) == len(set(KEYS)) > 50
    for name, (default, help_text) in config.SCHEMA.items():
        assert coerce(name, SPECS[name].type, default, "default") == default, name
        assert help_text and getattr(Recipe(), name) == default
    assert {name: getattr(Recipe(), name) for name in VAL_KEYS} == VAL.to_dict()


def test_the_recipe_is_read_as_attributes_and_as_a_mapping_and_changed_by_replace():
    cfg = config.resolve(os.path.join(RECIPES, "demo.yaml"), {"lr": 0.2})
    assert cfg.lr == cfg["lr"] == cfg.get("lr") == dict(cfg)["lr"] == 0.2
    assert list(cfg) == list(KEYS) + ["recipe", "classes_from"] and "lr" in cfg
    assert "sources" not in cfg and cfg.get("sources", "none") == "none"
    with pytest.raises(KeyError):
        cfg["learning_rate"]
    with pytest.raises(AttributeError):  # frozen: a change is a new recipe
        cfg.lr = 0.3
    moved = cfg.replace(rec_train="/data/train.rec")
    assert moved.rec_train == "/data/train.rec" and cfg.rec_train != moved.rec_train
    assert moved.replace(rec_train=cfg.rec_train) == cfg
    # where each value came from: the flag, the recipe file, or the default
    assert [cfg.source_of(k) for k in ("lr", "multiplier", "seed", "tensorboard")] == [
        "command line", os.path.join(RECIPES, "demo.yaml"),
        os.path.join(RECIPES, "imagenet.yaml"), "default"]


def test_classes_are_resolved_once_with_the_recipe(tmp_path):
    """The synsets beside --rec-train give the class count while resolving, so the tool,
    the printed config and the loop all see one count and who set it."""
    imagenet = os.path.join(RECIPES, "imagenet.yaml")
    synsets = tmp_path / "train.synsets.txt"
    synsets.write_text("cat\ndog\nfox\n")
    rec = str(tmp_path / "train.rec")
    cfg = config.resolve(imagenet, {"rec_train": rec})
    assert cfg.classes == 3 and cfg.source_of("classes") == str(synsets)
    assert cfg.classes_from == "3 classes in %s" % synsets
    assert config.resolve(imagenet).classes_from is None
    assert config.resolve(imagenet, {"rec_train": rec, "classes": 3}).source_of(
        "classes") == "command line"
    with pytest.raises(UserError, match=r"^--classes 5, but .* lists 3 classes; pass "
                       r"--classes 3"):
        config.resolve(imagenet, {"rec_train": rec, "classes": 5})


@pytest.mark.parametrize("bad,message", [
    ({"crop_ratio": 1.5}, "crop_ratio=1.5 is invalid: it must be in (0, 1]"),
    ({"std_rgb": [1.0, 0.0, 1.0]}, "std_rgb=[1.0, 0.0, 1.0] is invalid"),
    ({"mean_rgb": [1.0, 2.0]}, "mean_rgb=[1.0, 2.0] is invalid: it must be three numbers"),
    ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
    ({"max_aspect_ratio": 0.9}, "max_aspect_ratio must be at least 1, got 0.9"),
    ({"min_random_area": 0.5, "max_random_area": 0.4},
     "max_random_area must be at least min_random_area (0.5), got 0.4"),
    ({"color_jitter": -0.1}, "color_jitter must be 0 (off) or a positive strength"),
])
def test_a_bad_data_setting_is_refused_alike_by_recipe_flags_and_values(tmp_path, bad, message):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: imagenet.yaml\n" + "".join(
        "%s: %s\n" % item for item in bad.items()))
    for source, attempt in ((str(recipe), lambda: config.resolve(str(recipe))),
                            ("command line", lambda: config.resolve(None, bad)),
                            ("data setting", lambda: Recipe.from_values(dict(bad, lr=0.1)))):
        with pytest.raises(UserError) as err:
            attempt()
        assert str(err.value).startswith(source + ":") and message in str(err.value)


def test_a_data_pair_split_between_recipe_and_flags_is_checked(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: imagenet.yaml\nmin_random_area: 0.6\n")
    assert config.resolve(str(recipe), {"max_random_area": 0.7})["max_random_area"] == 0.7
    with pytest.raises(UserError, match=r"r.yaml with the command line: max_random_area must "
                       r"be at least min_random_area \(0.6\), got 0.5"):
        config.resolve(str(recipe), {"max_random_area": 0.5})


def test_an_input_below_the_networks_stride_is_refused_at_the_recipe():
    """28 px (Fashion-MNIST's side) is refused while resolving, before anything is built,
    naming the smallest size and what to pack with."""
    with pytest.raises(UserError) as err:
        config.resolve("demo.yaml", {"input_size": 28})
    message = str(err.value)
    assert "input_size must be at least 32" in message and "--resize 37" in message
    assert "got 28" in message and "\n" not in message
    assert config.resolve("demo.yaml", {"input_size": 32})["input_size"] == 32


@pytest.mark.parametrize("size", [26755, 99999999999])
def test_an_input_past_mxnets_array_limit_is_refused_at_the_recipe(size):
    """A side whose 3xSxS input alone passes MXNet 1.9.1's 2^31-value arrays was an
    MXNet traceback once the network ran; the recipe refuses it, naming the largest side."""
    with pytest.raises(UserError) as err:
        config.resolve("demo.yaml", {"input_size": size})
    message = str(err.value)
    assert "input_size must be at most 26754" in message and "got %d" % size in message
    assert "\n" not in message


def test_a_recipe_too_large_or_not_utf8_is_refused_naming_the_file(tmp_path):
    """An 18 MB recipe of a 6M-entry list took PyYAML 129 s and 4.4 GB before any check;
    a non-UTF-8 one gave the codec's words without the file. Both are one line naming it."""
    big = tmp_path / "big.yaml"
    with open(str(big), "w") as f:
        f.write("lr: 0.1\nlr_decay_epochs: [")
        f.write("1, " * 600000)
        f.write("2]\n")
    with pytest.raises(UserError) as err:
        config.resolve(str(big))
    message = str(err.value)
    assert str(big) in message and "larger than 1048576 bytes" in message
    assert "\n" not in message
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# r\xe9glages\nlr: 0.1\n".encode("latin-1"))
    with pytest.raises(UserError) as err:
        config.resolve(str(latin))
    message = str(err.value)
    assert str(latin) in message and "not UTF-8 text (byte 0xe9 at offset 3)" in message
    utf8 = tmp_path / "utf8.yaml"
    utf8.write_bytes("# r\xe9glages\nlr: 0.1\n".encode("utf-8"))
    assert config.resolve(str(utf8))["lr"] == 0.1
