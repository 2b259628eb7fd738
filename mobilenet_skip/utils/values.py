"""A recipe value as the type of its key's default, from YAML or command-line text.

Shared by the flags (argparse ``type=``) and recipe validation, so ``--rand-mirror off``
and ``rand_mirror: off`` mean the same and a NaN is refused on either path.
"""
import argparse

from ..errors import UserError

__all__ = ["parse_bool", "list_parser", "parser_for", "coerce", "FLOAT32_MAX"]

FLOAT32_MAX = 3.4028234663852886e38  # MXNet holds every float setting (lr, wd, ...) as float32


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


def coerce(key, default, value, source):
    """``value`` as ``default``'s type (finite numbers; list items as the list's).

    Raises
    ------
    UserError
        ``"<source>: <key> must be a <type>, got <value>"``.
    """
    kind = type(default).__name__
    try:
        if isinstance(default, bool):
            return value if isinstance(value, bool) else parse_bool(value)
        if isinstance(default, list):
            item = type(default[0]) if default else str
            kind = "list of %s" % item.__name__
            items = (list(value) if isinstance(value, (list, tuple))
                     else list_parser(default)(value))
            return [_number(item, v) for v in items] if item in (int, float) else items
        if isinstance(default, (int, float)):
            return _number(type(default), value)
        return "" if value is None else str(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        finite = (" (finite: no NaN or infinity, and within float32's +-3.4e38)"
                  if kind not in ("str", "bool") else "")
        raise UserError("%s: %s must be a %s%s, got %r" % (source, key, kind, finite, value))
