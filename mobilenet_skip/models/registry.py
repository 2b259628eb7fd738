"""The variants of Table 1's last row by name: a new variant is one entry in :data:`VARIANTS`
(or one :func:`register_variant` call), never code of its own."""
from .network import MobileNetSkip, skip_kind

__all__ = ["VARIANTS", "register_variant", "list_models", "canonical_name", "get_model",
           "BN_DEFAULTS", "norm_kwargs_from"]

# Table 1's last row: which skips ("connect") and which activation order.
VARIANTS = {
    "mobilenet": dict(connect="none", preact=False),
    "simple-connect": dict(connect="simple", preact=False),
    "full-connect": dict(connect="full", preact=False),
    "simple-connect-pre-act": dict(connect="simple", preact=True),
    "full-connect-pre-act": dict(connect="full", preact=True),
}

# MXNet Gluon's BatchNorm defaults: the BatchNorm of a config that names no BN keys.
BN_DEFAULTS = {"bn_momentum": 0.9, "bn_eps": 1e-5}


def norm_kwargs_from(cfg):
    """BatchNorm arguments (``momentum``, ``epsilon``) from a recipe's ``bn_momentum`` and
    ``bn_eps``; a config without them (a run's config.yaml may lack them) gets
    :data:`BN_DEFAULTS`.

    Epsilon is part of the inference graph (an export's symbol carries it), so whatever
    rebuilds a trained network from its config must pass these too.
    """
    cfg = cfg or {}
    return {"momentum": float(cfg.get("bn_momentum", BN_DEFAULTS["bn_momentum"])),
            "epsilon": float(cfg.get("bn_eps", BN_DEFAULTS["bn_eps"]))}


def register_variant(name, connect, preact=False):
    """Add a variant to :data:`VARIANTS`, after which :func:`get_model` builds it.

    Parameters
    ----------
    name : str
        New model name (lower case, ``-`` between words).
    connect : {"none", "simple", "full"}
        Skip scheme.
    preact : bool
        Pre-activation order.

    Returns
    -------
    str
        The registry key.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key in VARIANTS:
        raise ValueError("model %r is registered already" % key)
    skip_kind(connect, 0, 0, 1)  # validates `connect`
    VARIANTS[key] = dict(connect=connect, preact=bool(preact))
    return key


def list_models():
    """Names accepted by :func:`get_model`, in Table 3's order."""
    return list(VARIANTS)


def canonical_name(name):
    """Validate a model name (``_`` may stand for ``-``) and return its registry key."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in VARIANTS:
        raise ValueError("unknown model %r; valid names: %s" % (name, ", ".join(VARIANTS)))
    return key


def get_model(name, multiplier=1.0, classes=1000, **kwargs):
    """Build a network of the paper by name.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    multiplier : float
        Width multiplier (0.25, 0.5, 0.75, 1.0 or any positive value).
    classes : int
        Classifier outputs.
    **kwargs
        ``norm_layer``, ``norm_kwargs``, ``prefix``, ``params``, or overrides of
        the variant's ``connect``/``preact``.

    Returns
    -------
    MobileNetSkip
        An uninitialised ``HybridBlock``.
    """
    key = canonical_name(name)
    config = dict(VARIANTS[key])
    config.update(kwargs)
    return MobileNetSkip(multiplier=multiplier, classes=classes, name=key, **config)
