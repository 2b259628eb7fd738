"""A recipe value as its key's type, from YAML or command-line text, and the checks a
value must pass.

The flags (argparse ``type=``) and :class:`~mobilenet_skip.config.recipe.Recipe` share
the parsing, so ``--rand-mirror off`` and ``rand_mirror: off`` mean the same and a NaN is
refused on either path. A check is called as ``check(key, value, source)`` on a value
already of its key's type, and returns the value (as the recipe holds it) or raises a
one-line :class:`UserError` that starts with ``source``.
"""
import argparse
from typing import Literal, Union, get_args, get_origin

from ..data.preprocess import check_field
from ..errors import UserError
from ..optim.rules import FLOAT32_MAX
from ..utils.threads import parse_threads

__all__ = ["Threads", "parse_bool", "list_parser", "parser_for", "type_name", "coerce",
           "Must", "OneOf", "Known", "Preprocess", "ThreadCount"]

# ``auto`` or a positive count: the type of the two thread keys. YAML and flags give
# text (``auto``, ``"6"``); the recipe holds ``"auto"`` or an int.
Threads = Union[int, Literal["auto"]]


def parse_bool(text):
    """``true/yes/on/1`` or ``false/no/off/0`` (any case) as a bool."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError("expected true or false, got %r" % text)


def list_parser(example):
    """A parser of ``"30,60,90"`` into a list of ``example``'s item type."""
    item = type(example[0]) if example else str

    def parse(text):
        try:
            return [item(v) for v in str(text).replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise argparse.ArgumentTypeError("expected a comma-separated list of %s, got %r"
                                             % (item.__name__, text))
    return parse


def parser_for(default):
    """The argparse ``type=`` of a key whose default is ``default``."""
    if isinstance(default, bool):
        return parse_bool
    if isinstance(default, list):
        return list_parser(default)
    return type(default)


def type_name(kind):
    """How an error names a key's type: ``int``, ``float``, ``list of int``, ..."""
    if get_origin(kind) is list:
        return "list of %s" % get_args(kind)[0].__name__
    return "str" if kind == Threads else kind.__name__


def _number(item_type, value):
    """``value`` as an int or float, refusing NaN/inf, floats beyond float32 and fractional
    ints (``--lr 1e308`` would reach MXNet's operators as an unparsable parameter)."""
    if isinstance(value, bool) or value is None:
        raise ValueError
    number = float(value)
    if number != number or abs(number) > FLOAT32_MAX:
        raise ValueError
    if item_type is int:
        if not number.is_integer() or isinstance(value, str) and not value.strip().lstrip(
                "+-").isdigit():
            raise ValueError
        return int(number)
    return number


def coerce(key, kind, value, source):
    """``value`` as the type ``kind`` (finite numbers; list items as the list's).

    Raises
    ------
    UserError
        ``"<source>: <key> must be a <type>, got <value>"``.
    """
    try:
        if kind is bool:
            return value if isinstance(value, bool) else parse_bool(value)
        if get_origin(kind) is list:
            item = get_args(kind)[0]
            items = (list(value) if isinstance(value, (list, tuple))
                     else list_parser([item()])(value))
            return [_number(item, v) for v in items]
        if kind in (int, float):
            return _number(kind, value)
        return "" if value is None else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        name = type_name(kind)
        finite = (" (finite: no NaN or infinity, and within float32's +-3.4e38)"
                  if name not in ("str", "bool") else "")
        raise UserError("%s: %s must be a %s%s, got %r" % (source, key, name, finite, value))


class Must(object):
    """``test`` holds for the value (for each item of a list):
    ``"<source>: <key> must be <what>, got <value>"`` otherwise."""

    def __init__(self, test, what):
        self.test, self.what = test, what

    def __call__(self, key, value, source):
        if not all(self.test(v) for v in (value if isinstance(value, list) else [value])):
            raise UserError("%s: %s must be %s, got %r" % (source, key, self.what, value))
        return value


class OneOf(object):
    """A name in ``choices`` (a registry: its entries as they are when checked)."""

    def __init__(self, choices):
        self.choices = choices

    def __call__(self, key, value, source):
        if value not in self.choices:
            raise UserError("%s: %s must be one of %s, got %r"
                            % (source, key, " | ".join(self.choices), value))
        return value


class Known(object):
    """A name that ``names()`` lists: ``"<source>: unknown <what> ...; valid names: ..."``."""

    def __init__(self, names, what):
        self.names, self.what = names, what

    def __call__(self, key, value, source):
        if value not in self.names():
            raise UserError("%s: unknown %s %r; valid names: %s"
                            % (source, self.what, value, ", ".join(self.names())))
        return value


class Preprocess(object):
    """The rule of a field of the validation transform, the one an export's sidecar
    passes too (:func:`~mobilenet_skip.data.preprocess.check_field`)."""

    def __call__(self, key, value, source):
        return check_field(key, value, source + ":")


class ThreadCount(object):
    """``auto`` or a positive count, held as ``"auto"`` or an int."""

    def __call__(self, key, value, source):
        threads = parse_threads(value)
        if threads is None:
            raise UserError("%s: %s must be a positive number or auto, got %r"
                            % (source, key, value))
        return threads
