"""Writing the deployment forms of :data:`~.registry.FORMS`: plain FP32, fused FP32, INT8,
ONNX and ONNX Runtime INT8, each derived in memory from the FP32 graph
(:class:`~.artifact.Graph`) that the source's weights give, so nothing is re-read from disk.

The registry itself (:class:`~.registry.Form`, :func:`~.registry.register`) lives in
:mod:`.registry`, which the readers import too; it is re-exported here. Adding a form
is one :func:`register` call, e.g. a form writing the graph's JSON::

    register(Form("graph-json", None, ".graph.json", "also write PREFIX.graph.json",
                  derive=lambda base, out, options: base.graph.sym.save(out) or out))

and ``export_model.py --graph-json`` writes it (tests/test_export.py registers one).
This module holds the built-in forms' writers, which the registry names lazily.
"""
import argparse
import contextlib
import os
from collections import namedtuple

from ..errors import UserError
from ..runs.folder import RunDir
from ..utils.fs import writable_dir
from . import int8, onnx, ort_int8
from .artifact import graph_of, record_digests, refuse_overwrites, write_graph, written_files
from .mkldnn import fuse, require_mkldnn
from .registry import FORMS, RUNTIMES, Form, register
from .source import output_prefix

__all__ = ["Form", "Base", "FORMS", "RUNTIMES", "register", "add_form_arguments", "form_options",
           "selected", "deploy", "derived_info", "write_derived"]

Base = namedtuple("Base", ["prefix", "graph", "info", "synsets"])
Base.__doc__ = ("The plain FP32 export every form derives from: its prefix, Graph, sidecar "
                "and class names (a list, a file or None).")


def add_form_arguments(parser):
    """``--NAME`` for every optional form, then each form's own options."""
    for form in FORMS.values():
        if form.help:
            parser.add_argument("--" + form.name, dest=_dest(form), action="store_true",
                                help=form.help)
    for form in FORMS.values():
        if form.add_arguments:
            form.resolved("add_arguments")(parser)


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
    form's check runs before the first file is written. Into a training run's folder it
    writes under the folder's lock (refused while the run trains), and the one-file
    forms' digests go into ``output``'s sidecar.

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
    with _run_folder_lock(output):
        refuse_overwrites([p for f in chosen for p in written_files(output + f.suffix,
                                                                    f.kind)])
        for form in chosen:
            if form.check:
                form.resolved("check")(source, options)
        _writable(output)
        if source.synsets is None:
            raise UserError("no class names for %s: pass --synsets FILE (im2rec.py --list "
                            "--recursive wrote PREFIX.synsets.txt beside the training list)"
                            % source.path)
        info = dict(source.info, kind="fp32")
        base = Base(output, graph_of(source.net, info["input_size"]), info, source.synsets)
        written = {f.name: f.resolved("derive")(base, output + f.suffix, options)
                   for f in chosen}
        record_digests(output, {f.suffix: written[f.name] for f in chosen if f.kind is None})
    return written


def _run_folder_lock(output):
    """The lock of ``output``'s folder when it holds a training run (its config.yaml, or
    the lock of one starting), else nothing to hold."""
    run = RunDir(os.path.dirname(os.path.abspath(output)))
    if not os.path.isfile(run.config_path) and not os.path.exists(run.file(RunDir.LOCK)):
        return contextlib.nullcontext()
    _writable(output)  # named for --output, before the lock names it for --save-dir
    return run.locked()


def _writable(output):
    writable_dir(os.path.dirname(os.path.abspath(output)), "the export %s" % output,
                 "give --output a PREFIX on a writable disk")


def derived_info(base, kind, **extra):
    """The sidecar of a form of kind ``kind`` derived from ``base`` (``extra`` added)."""
    return dict(base.info, kind=kind, derived_from=os.path.basename(base.prefix), **extra)


def write_derived(base, out, kind, graph=None, **extra):
    """Write ``graph`` (default: ``base.graph``) as a complete export of kind ``kind`` under
    ``out``, with ``base``'s class names and :func:`derived_info`; returns ``out``."""
    write_graph(out, base.graph if graph is None else graph, base.synsets,
                derived_info(base, kind, **extra))
    return out


# --- the built-in forms' writers, named in the registry ------------------------------

def derive_fp32(base, out, options):
    write_graph(out, base.graph, base.synsets, base.info)
    return out


def check_fused(source, options):
    require_mkldnn("--fused")


def derive_fused(base, out, options):
    return write_derived(base, out, "fused", fuse(base.graph, base.info["input_size"]))


def check_int8(source, options):
    require_mkldnn("--int8")
    int8.check(source, options)


def derive_int8(base, out, options):
    images, rec = int8.calibration_for(base.info, options)
    info = derived_info(base, "int8", calib_rec=rec)
    int8.export_int8(base.graph, info, out, images, options.calib_mode,
                     options.int8_keep_ends, base.synsets)
    return out


def check_onnx(source, options):
    onnx.onnx_ir_version(options.onnx_opset)


def derive_onnx(base, out, options):
    return onnx.export_onnx(base.graph, base.info, out, opset=options.onnx_opset)


def onnx_note(options):
    return " (ONNX opset %d, IR version %d)" % (options.onnx_opset,
                                                onnx.onnx_ir_version(options.onnx_opset))


def derive_onnx_int8(base, out, options):
    images, rec = int8.calibration_for(base.info, options)
    return ort_int8.export_onnx_int8(
        base.graph, derived_info(base, "int8", calib_rec=rec), out, images,
        options.calib_mode, options.int8_keep_ends, options.onnx_int8_format,
        options.onnx_opset, options.batch_size)
