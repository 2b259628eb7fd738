"""The registry of deployment forms, which writers and readers both import.

A form is a :class:`Form`: its name (and ``--NAME`` flag of ``tools/export_model.py``),
the sidecar ``kind`` it writes (None: not an export MXNet loads back, such as ONNX),
the suffix of its output after the export prefix, the flag's help (None: always
written), ``add_arguments(parser)`` for its own options, ``check(source, options)``
run before any file is written, ``derive(base, out, options)`` writing it,
``note(options)``, text after its "wrote" line, and ``runtime``, what runs what it
writes (a key of :data:`RUNTIMES`; None: nothing here): the benchmark times, and
``export_model.py --eval-rec`` scores, every form that names one.

A runtime is a :class:`Runtime`: its name (``eval_imagenet.py --runtime NAME``) and
``open``, which opens a form's output (an export prefix, an ONNX file) as a
:class:`~.runtime.Runner`, the one interface every scorer calls.

This module imports nothing heavy, so that ``tools/predict.py``,
``tools/eval_imagenet.py`` and the benchmark know every loadable kind
(:func:`kinds`, which :func:`~.artifact.check_info` asks) without importing the
writers or the runtimes: the built-in forms and runtimes name their functions as
``"module:function"`` strings (relative to this package), which :meth:`Form.resolved`
and :meth:`Runtime.resolved` import on first use.
:mod:`.forms` drives the writing. Adding a form is one :func:`register` call; a form
MXNet loads back (one with a kind) is declared here, below the built-ins, so that
every reader sees its kind.
"""
import importlib
from collections import namedtuple

__all__ = ["Form", "FORMS", "Runtime", "RUNTIMES", "register", "kinds"]

_FIELDS = ["name", "kind", "suffix", "help", "add_arguments", "check", "derive", "note",
           "runtime"]


def _resolve(value):
    """``value``, or the callable a ``"module:function"`` string names (a module starting
    with ``.`` is relative to :mod:`mobilenet_skip.deploy`), imported now."""
    if isinstance(value, str):
        module, _, name = value.partition(":")
        value = getattr(importlib.import_module(module, __package__), name)
    return value


class Runtime(namedtuple("Runtime", ["name", "open"])):
    """What runs a form's output: its name, and ``open(path, ctxs=None, api=...,
    batch_size=..., input_size=None)`` (a callable or a ``"module:function"`` string),
    which returns a :class:`~.runtime.Runner`."""
    __slots__ = ()

    def resolved(self, field="open"):
        """The callable in ``field``, imported on first use."""
        return _resolve(getattr(self, field))


# MXNet loads an export prefix (plain, fused or INT8), ONNX Runtime an .onnx file.
RUNTIMES = {"mxnet": Runtime("mxnet", ".runtime:export_runner"),
            "onnxruntime": Runtime("onnxruntime", ".runtime:onnx_runner")}


class Form(namedtuple("Form", _FIELDS)):
    """A deployment form: name (its --NAME flag), sidecar kind (None: not an MXNet export),
    output suffix, flag help (None: always written), add_arguments, check, derive and
    note(options), each a callable, a ``"module:function"`` string or None; and runtime, a
    key of RUNTIMES (None: nothing here runs it)."""
    __slots__ = ()

    def resolved(self, field):
        """The callable in ``field``, importing a ``"module:function"`` reference (a module
        starting with ``.`` is relative to :mod:`mobilenet_skip.deploy`)."""
        return _resolve(getattr(self, field))


Form.__new__.__defaults__ = (None,) * 6  # help, add_arguments, check, derive, note, runtime

FORMS = {}


def register(form):
    """Make ``form`` one of :data:`FORMS` (its ``--NAME`` flag and its kind); returns it."""
    if form.runtime is not None and form.runtime not in RUNTIMES:
        raise ValueError("form %s: runtime %r is none of %s" % (form.name, form.runtime,
                                                              ", ".join(RUNTIMES)))
    FORMS[form.name] = form
    return form


def kinds():
    """The sidecar kinds a reader accepts: those of the registered forms."""
    return {form.kind for form in FORMS.values() if form.kind}


register(Form("fp32", "fp32", "", derive=".forms:derive_fp32", runtime="mxnet"))
register(Form("fused", "fused", "-fused", "also write PREFIX-fused",
              check=".forms:check_fused", derive=".forms:derive_fused", runtime="mxnet"))
register(Form("int8", "int8", "-int8", "also write PREFIX-int8", ".int8:add_arguments",
              ".forms:check_int8", ".forms:derive_int8", runtime="mxnet"))
register(Form("onnx", None, ".onnx", "also write PREFIX.onnx", ".onnx:add_arguments",
              ".forms:check_onnx", ".forms:derive_onnx", ".forms:onnx_note",
              runtime="onnxruntime"))
register(Form("onnx-int8", None, "-int8.onnx", "also write PREFIX-int8.onnx: ONNX Runtime's "
              "static INT8 quantisation of PREFIX.onnx, calibrated as --int8 is",
              ".ort_int8:add_arguments", ".ort_int8:check", ".forms:derive_onnx_int8",
              ".ort_int8:note", runtime="onnxruntime"))
