"""The deployment forms, one registered entry each: plain FP32, fused FP32, INT8, ONNX.

Every form is derived in memory from the FP32 graph (:class:`~.artifact.Graph`) that
the source's weights give, so nothing is re-read from disk. A form is a
:class:`Form`: its name (and ``--NAME`` flag of ``tools/export_model.py``), the
sidecar kind it writes, the suffix of its output after the export prefix, the flag's
help, ``add_arguments(parser)`` for its own options, ``check(source, options)`` run
before any file is written, and ``derive(base, out, options)`` writing it. Adding a
form is one :func:`register` call, e.g. a form writing the graph's JSON::

    register(Form("graph-json", None, ".graph.json", "also write PREFIX.graph.json",
                  derive=lambda base, out, options: base.graph.sym.save(out) or out))

and ``export_model.py --graph-json`` writes it (tests/test_export.py registers one).
"""
import argparse
import os
from collections import namedtuple

from ..errors import UserError
from . import int8, onnx
from .artifact import KINDS, graph_of, refuse_overwrites, write_graph, written_files
from .mkldnn import fuse, require_mkldnn
from .source import output_prefix

__all__ = ["Form", "Base", "FORMS", "register", "add_form_arguments", "form_options", "selected",
           "deploy"]

Form = namedtuple("Form", ["name", "kind", "suffix", "help", "add_arguments", "check",
                           "derive", "note"])
Form.__new__.__defaults__ = (None,) * 5  # help, add_arguments, check, derive, note
Form.__doc__ = ("A deployment form: name (its --NAME flag), sidecar kind (None: not an MXNet "
                "export), output suffix, flag help (None: always written), add_arguments, "
                "check, derive and note(options) (text after its 'wrote' line), or None.")

Base = namedtuple("Base", ["prefix", "graph", "info", "synsets"])
Base.__doc__ = ("The plain FP32 export every form derives from: its prefix, Graph, sidecar "
                "and class names (a list, a file or None).")

FORMS = {}


def register(form):
    """Make ``form`` one of :data:`FORMS` (its ``--NAME`` flag included); returns it."""
    FORMS[form.name] = form
    if form.kind:
        KINDS.add(form.kind)
    return form


def add_form_arguments(parser):
    """``--NAME`` for every optional form, then each form's own options."""
    for form in FORMS.values():
        if form.help:
            parser.add_argument("--" + form.name, dest=_dest(form), action="store_true",
                                help=form.help)
    for form in FORMS.values():
        if form.add_arguments:
            form.add_arguments(parser)


def form_options(**overrides):
    """Every form's options at their defaults (as its flags declare them), with ``overrides``."""
    parser = argparse.ArgumentParser(add_help=False)
    add_form_arguments(parser)
    options = parser.parse_args([])
    for key, value in overrides.items():
        setattr(options, key, value)
    return options


def _dest(form):
    return form.name.replace("-", "_")


def selected(options):
    """Names of the optional forms whose ``--NAME`` flag is set in ``options``."""
    return [name for name, form in FORMS.items() if getattr(options, _dest(form), False)]


def deploy(source, output, forms=(), options=None):
    """Write the plain FP32 export of ``source`` under ``output``, then ``forms`` from it.

    ``output`` is a prefix (a folder means ``folder/<model>``, see
    :func:`~.source.output_prefix`); each form goes to ``output`` + its suffix. Every
    form's check runs before the first file is written.

    Parameters
    ----------
    source : Source
        From :func:`~.source.load_source`.
    forms : iterable of str
        Names in :data:`FORMS` besides ``fp32``.
    options : argparse.Namespace, optional
        The forms' options (default: :func:`form_options`).

    Returns
    -------
    dict
        Form name to what it wrote (a prefix, or the file for a one-file form), in
        registry order.
    """
    options = options or form_options()
    unknown = sorted(set(forms) - set(FORMS))
    if unknown:
        raise UserError("no deployment form %s; the forms are %s"
                        % (unknown[0], ", ".join(FORMS)))
    if source.info.get("kind") not in (None, "fp32"):
        raise UserError("%s is a %s export; derive deployment forms from the plain FP32 "
                        "export instead" % (source.path, source.info["kind"]))
    output = output_prefix(output, source)
    chosen = [f for f in FORMS.values() if not f.help or f.name in forms]
    refuse_overwrites([p for f in chosen for p in written_files(output + f.suffix, f.kind)])
    for form in chosen:
        if form.check:
            form.check(source, options)
    if source.synsets is None:
        raise UserError("no class names for %s: pass --synsets FILE (im2rec.py --list "
                        "--recursive wrote PREFIX.synsets.txt beside the training list)"
                        % source.path)
    info = dict(source.info, kind="fp32")
    base = Base(output, graph_of(source.net, info["input_size"]), info, source.synsets)
    return {f.name: f.derive(base, output + f.suffix, options) for f in chosen}


def _derived_info(base, kind, **extra):
    return dict(base.info, kind=kind, derived_from=os.path.basename(base.prefix), **extra)


def _write(out, graph, base, info):
    write_graph(out, graph, base.synsets, info)
    return out


def _int8(base, out, options):
    images = int8.calibration_images(options.calib_rec, base.info, options.calib_batches,
                                     options.batch_size)
    info = _derived_info(base, "int8", calib_rec=os.path.abspath(options.calib_rec))
    int8.export_int8(base.graph, info, out, images, options.calib_mode,
                     options.int8_keep_ends, base.synsets)
    return out


def _int8_check(source, options):
    require_mkldnn("--int8")
    int8.check(source, options)


register(Form("fp32", "fp32", "", derive=lambda base, out, options: _write(
    out, base.graph, base, base.info)))
register(Form(
    "fused", "fused", "-fused", "also write PREFIX-fused",
    check=lambda source, options: require_mkldnn("--fused"),
    derive=lambda base, out, options: _write(out, fuse(base.graph, base.info["input_size"]),
                                             base, _derived_info(base, "fused"))))
register(Form("int8", "int8", "-int8", "also write PREFIX-int8", int8.add_arguments,
              _int8_check, _int8))
register(Form(
    "onnx", None, ".onnx", "also write PREFIX.onnx", onnx.add_arguments,
    check=lambda source, options: onnx.onnx_ir_version(options.onnx_opset),
    derive=lambda base, out, options: onnx.export_onnx(base.graph, base.info, out,
                                                       opset=options.onnx_opset),
    note=lambda options: " (ONNX opset %d, IR version %d)" % (
        options.onnx_opset, onnx.onnx_ir_version(options.onnx_opset))))
