"""Warm start from gluoncv's ``mobilenet<m>`` weights.

gluoncv stores MobileNet v1 as one ``features`` sequence: the stem and then, per DW
block, (dw conv, BN, ReLU, pw conv, BN, ReLU). So its k-th conv+BN pair sits at
``features.{3k}`` / ``features.{3k+1}`` (structural names, ``save_parameters``) or is
``conv{k}`` / ``batchnorm{k}`` (legacy prefixed names); k runs over the stem and
then each DW block's dw and pw convs, the same order as ours.
"""
import mxnet as mx

from ..errors import mxnet_message

__all__ = ["load_gluoncv_params", "gluoncv_units"]

_BN_PARAMS = ("gamma", "beta", "running_mean", "running_var")


def gluoncv_units(net):
    """Our (conv, BN) blocks in gluoncv's order: stem, then dw and pw of every block."""
    units = [(net.stem.conv, net.stem.bn)]
    for block in net.blocks:
        units += [(block.body.dw, block.body.dw_bn), (block.body.pw, block.body.pw_bn)]
    return units


def _source_keys(loaded):
    """Map (unit index, param) -> key in the loaded file, for either naming scheme."""
    def structural(k, p):
        return "features.%d.%s" % (3 * k + (p != "weight"), p)

    if any("." in key for key in loaded):
        return structural, "output.weight", "output.bias"
    prefix = next((key[:-len("conv0_weight")] for key in loaded
                   if key.endswith("conv0_weight")), None)
    if prefix is None:
        raise ValueError("this file holds neither gluoncv structural names (features.0.weight) "
                         "nor legacy ones (mobilenet0_conv0_weight); is it a gluoncv "
                         "mobilenet .params file?")

    def legacy(k, p):
        return "%sconv%d_weight" % (prefix, k) if p == "weight" else \
            "%sbatchnorm%d_%s" % (prefix, k, p)
    return legacy, prefix + "dense0_weight", prefix + "dense0_bias"


def load_gluoncv_params(net, path, ctx=None, load_output=True, init=None):
    """Load a gluoncv ``mobilenet<m>`` ``.params`` file into a mobilenet-skip network.

    ``mobilenet`` and ``simple-connect`` have exactly gluoncv's parameters and are
    loaded whole; full-connect's projections are left as they are (pass ``init``, or
    initialise them yourself) and reported. Pre-act networks cannot take these
    weights: their BNs normalise conv inputs, not outputs.

    Parameters
    ----------
    net : MobileNetSkip
        Target network, initialised or not (loaded parameters are initialised here).
    path : str
        The gluoncv ``.params`` file.
    ctx : Context or list of Context, optional
        Where to place parameters that are not yet initialised (default CPU).
    load_output : bool
        Load the 1000-way classifier too. Set False to fine-tune on other classes.
    init : Initializer, optional
        Initialise the parameters the file does not hold (full-connect's projections, the
        classifier with ``load_output=False``) that are not initialised yet. Calling
        ``net.initialize`` afterwards would do the same but warn once per loaded parameter.

    Returns
    -------
    list of str
        Structural names of ``net``'s parameters that were not loaded.
    """
    if getattr(net, "preact", False):
        raise ValueError("gluoncv mobilenet weights are post-activation (conv-BN-ReLU); "
                         "%s puts BN before each conv, so they cannot be loaded into it. "
                         "Use mobilenet, simple-connect or full-connect."
                         % (net.variant or "a pre-act network"))
    try:
        loaded = mx.nd.load(path)
    except Exception as err:  # MXNet's message opens with "Traceback": quote its check
        raise ValueError("cannot read %s: not an MXNet .params file (%s)"
                         % (path, mxnet_message(err))) from None
    if not isinstance(loaded, dict):
        raise ValueError("%s holds an unnamed NDArray list, not named parameters" % path)
    loaded = {k.split(":", 1)[-1]: v for k, v in loaded.items()}  # tolerate arg:/aux:
    key_of, out_w, out_b = _source_keys(loaded)

    pairs = []  # (our Parameter, source key)
    for k, (conv, bn) in enumerate(gluoncv_units(net)):
        pairs.append((conv.weight, key_of(k, "weight")))
        pairs += [(getattr(bn, p), key_of(k, p)) for p in _BN_PARAMS]
    if load_output:
        pairs += [(net.output.weight, out_w), (net.output.bias, out_b)]

    missing = [key for _, key in pairs if key not in loaded]
    if missing:
        raise ValueError("%s lacks %d of the parameters a %s-block mobilenet needs (first: %s); "
                         "is it a gluoncv mobilenet v1 file?" % (path, len(missing),
                                                                 len(net.blocks), missing[0]))
    stem_file = loaded[key_of(0, "weight")].shape[0]
    same_width = stem_file == net.stem.conv.weight.shape[0]
    for param, key in pairs:
        if loaded[key].shape != param.shape:
            hint = ("the classifier differs: pass load_output=False to keep your own"
                    if same_width else
                    "the file is mobilenet%g, the network is %g wide: pass multiplier=%g"
                    % (stem_file / 32.0, net.multiplier, stem_file / 32.0))
            raise ValueError("shape mismatch for %s: file %s, network %s; %s"
                             % (key, loaded[key].shape, param.shape, hint))
    for param, key in pairs:
        value = loaded[key].astype(param.dtype)
        if param._data is None:  # not initialised: place it like load_parameters does
            param._load_init(value, ctx or mx.cpu())
        else:
            param.set_data(value)
    done = {id(param) for param, _ in pairs}
    left = [(name, param) for name, param in net._collect_params_with_prefix().items()
            if id(param) not in done]
    if init is not None:
        for _, param in left:
            if param._data is None:
                param.initialize(ctx=ctx or mx.cpu(), default_init=init)
    return [name for name, _ in left]
