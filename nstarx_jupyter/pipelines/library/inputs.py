"""Input processors: the steps that check, clean and shape feature records before a model.

They live in `checks` (validation, coercion, outliers) and `transforms` (imputation, scaling,
one-hot, expressions); this module gathers them under one name.
"""

from __future__ import annotations

from nstarx_jupyter.pipelines.library.checks import (
    CoerceConfig,
    OutlierDetector,
    OutliersConfig,
    SchemaValidator,
    TypeCoercer,
    ValidateConfig,
)
from nstarx_jupyter.pipelines.library.transforms import (
    ExpressionConfig,
    FeatureExpressions,
    ImputeConfig,
    MissingValueImputer,
    NumericScaler,
    OneHotConfig,
    OneHotEncoder,
    ScaleConfig,
)

__all__ = ["CoerceConfig", "ExpressionConfig", "FeatureExpressions", "ImputeConfig",
           "MissingValueImputer", "NumericScaler", "OneHotConfig", "OneHotEncoder",
           "OutlierDetector", "OutliersConfig", "ScaleConfig", "SchemaValidator", "TypeCoercer",
           "ValidateConfig"]  # fmt: skip
