"""Every recipe key as a command-line flag of the same name (``lr_mode`` -> ``--lr-mode``).

:func:`add_flags` adds them to a tool's parser and :func:`flag_overrides` reads back the
ones given, which :func:`mobilenet_skip.config.recipes.resolve` lays over the recipe.
"""
import argparse

from .recipes import SCHEMA, key_help
from .values import parse_bool, parser_for
from ..errors import UserError

__all__ = ["add_flags", "flag_overrides"]


def _flag(key):
    return "--" + key.replace("_", "-")


class _Switch(argparse.Action):
    """A boolean recipe key as a switch: ``--key`` is true, ``--no-key`` false.

    ``--key false`` (a value after the flag, as in a recipe) is accepted too, so a value
    can be passed through from a script or a sweep as it is.
    """

    def __init__(self, option_strings, dest, negatives=(), **kwargs):
        self.negatives = tuple(negatives)
        super(_Switch, self).__init__(option_strings, dest, nargs="?", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.negatives:
            if values is not None:
                parser.error("%s takes no value (it means false); use %s %s instead"
                             % (option_string, self.option_strings[0], values))
            setattr(namespace, self.dest, False)
        else:
            setattr(namespace, self.dest, True if values is None else parse_bool(values))


# Flags that gluoncv's train_imagenet.py spells differently, or that mean one key:
# key -> (extra option strings, note for --help).
ALIASES = {
    "lr_decay_epochs": (("--lr-decay-epoch",), "gluoncv's --lr-decay-epoch is the same list"),
    "label_smoothing": ((), "a bare --label-smoothing means 0.1, as gluoncv's switch; ours "
                            "also takes the epsilon"),
    "no_wd_dw_bn": (("--no-wd",), "--no-wd is gluoncv's name, but gluoncv spares BatchNorm "
                                  "and every bias, ours BatchNorm and depthwise filters"),
}
NEGATIVE_FLAGS = {"no_wd_dw_bn": "--wd-dw-bn"}  # "--no-no-wd-dw-bn" would be unreadable


def add_flags(parser):
    """Add one ``--flag`` per recipe key to an argparse parser (default: not given).

    Booleans are switches (``--rand-mirror`` / ``--no-rand-mirror``); gluoncv's names
    (``--lr-decay-epoch``, ``--no-wd``, ``--label-smoothing``, ``--num-gpus``) are
    accepted where they mean the same, and ``--help`` says where they differ.
    """
    group = parser.add_argument_group("recipe keys (each overrides the recipe's value)")
    for key, (default, _) in SCHEMA.items():
        help_text = key_help(key)
        shown = ",".join(str(v) for v in default) if isinstance(default, list) else default
        extra, note = ALIASES.get(key, ((), ""))
        help_text = "%s (schema default: %s)%s" % (help_text, shown, "; " + note if note else "")
        flags = (_flag(key),) + tuple(extra)
        if isinstance(default, bool):
            negative = NEGATIVE_FLAGS.get(key, "--no-" + key.replace("_", "-"))
            group.add_argument(*(flags + (negative,)), dest=key, action=_Switch,
                               negatives=(negative,), default=None, metavar="BOOL",
                               help=help_text + "; %s alone means true, %s false"
                               % (flags[0], negative))
        elif key == "label_smoothing":
            group.add_argument(*flags, dest=key, type=float, nargs="?", const=0.1,
                               default=None, metavar="EPS", help=help_text)
        else:
            group.add_argument(*flags, dest=key, type=parser_for(default), default=None,
                               metavar=type(default).__name__.upper(), help=help_text)
    group.add_argument("--num-gpus", type=int, default=None, metavar="N",
                       help="gluoncv's flag: the same as --gpus 0,1,...,N-1 (0 = CPU); "
                       "not together with --gpus")
    return parser


def flag_overrides(args):
    """The recipe keys set explicitly on the command line (``--num-gpus`` as ``gpus``)."""
    out = {key: getattr(args, key) for key in SCHEMA if getattr(args, key, None) is not None}
    num_gpus = getattr(args, "num_gpus", None)
    if num_gpus is not None:
        if "gpus" in out:
            raise UserError("--num-gpus %d and --gpus %s both name the GPUs; pass one of them"
                            % (num_gpus, out["gpus"]))
        if num_gpus < 0:
            raise UserError("--num-gpus must be 0 (CPU) or more, got %d" % num_gpus)
        out["gpus"] = ",".join(str(i) for i in range(num_gpus))
    return out
