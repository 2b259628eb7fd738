"""The five networks of the paper's Table 1, built from one table and four blocks.

Every variant is a row of :data:`VARIANTS` (which skips, which activation order)
applied to the same layer list, :data:`TABLE1`; no variant has code of its own.
:mod:`.blocks` holds the blocks, :mod:`.network` the layer list and the network,
:mod:`.registry` the variants by name, :mod:`.fusion` the fused BatchNorm-ReLU of CPU
training.
"""
from .blocks import DWBlock, DWUnit, Projection, Stem
from .fusion import fused_count, fusion_supported, set_bn_relu_fusion
from .network import (MAX_ARRAY_VALUES, MAX_INPUT_SIZE, MAX_MAP_VALUES, MIN_INPUT_SIZE,
                      STEM_CHANNELS, TABLE1, MobileNetSkip, check_input_shape, min_train_bytes,
                      skip_kind)
from .registry import (BN_DEFAULTS, VARIANTS, canonical_name, get_model, list_models,
                       norm_kwargs_from, register_variant)

__all__ = ["TABLE1", "STEM_CHANNELS", "VARIANTS", "Stem", "DWUnit", "Projection",
           "DWBlock", "MobileNetSkip", "skip_kind", "check_input_shape", "canonical_name",
           "get_model", "list_models", "register_variant", "MIN_INPUT_SIZE", "MAX_INPUT_SIZE",
           "MAX_ARRAY_VALUES", "MAX_MAP_VALUES", "BN_DEFAULTS",
           "norm_kwargs_from", "min_train_bytes", "set_bn_relu_fusion", "fused_count",
           "fusion_supported"]
