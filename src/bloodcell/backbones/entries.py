"""The registered Keras-applications backbones.

Each entry records what the Keras constructor expects, so bloodcell can feed it pixels in 0–255:
EfficientNet, EfficientNetV2, MobileNetV3 and ConvNeXt ship their own preprocessing inside the model
(``include_preprocessing=True`` or a built-in Rescaling/Normalization) and take 0–255 directly;
ResNet50V2 wants −1..1 and DenseNet121 ImageNet-standardised values, which
:class:`~bloodcell.backbones.PixelPreprocessing` produces in the graph.

Parameter counts are those of the headless models (``include_top=False``; they do not depend on the
input size), counted with ``model.count_params()`` in Keras 3.15, BatchNorm statistics included.
The constructors are named by dotted path, so importing this module does not import Keras.
"""

from __future__ import annotations

from bloodcell.backbones.registry import BackboneSpec, register_backbone

__all__: list[str] = []

_KERAS = "Keras applications (keras.applications); ImageNet weights downloaded by Keras on first use"


def _keras_entry(
    display_name: str,
    family: str,
    params: int,
    *,
    preprocessing: str = "none",
    input_range: tuple[float, float] = (0.0, 255.0),
    include_preprocessing: bool | None = True,
    aliases: tuple[str, ...] = (),
) -> None:
    kwargs: dict[str, object] = {"include_top": False}
    if include_preprocessing is not None:  # only the constructors that have the argument
        kwargs["include_preprocessing"] = include_preprocessing
    register_backbone(
        BackboneSpec(
            name=display_name,
            constructor=f"keras.applications.{display_name}",
            family=family,
            preprocessing=preprocessing,
            input_range=input_range,
            min_size=32,  # Keras's own minimum for these (total stride 32)
            params=params,
            pretrained=("imagenet",),
            constructor_kwargs=kwargs,
            aliases=aliases,
            display_name=display_name,
            source=_KERAS,
        )
    )


# EfficientNetV2 (Tan & Le 2021). include_preprocessing=True: B0–B3 rescale and normalise, S/M/L map
# 0–255 to −1..1 inside the model. BatchNorm momentum 0.9.
for _variant, _params in {
    "B0": 5_919_312,
    "B1": 6_931_124,
    "B2": 8_769_374,
    "B3": 12_930_622,
    "S": 20_331_360,
    "M": 53_150_388,
    "L": 117_746_848,
}.items():
    _v = _variant.lower()
    _keras_entry(
        f"EfficientNetV2{_variant}",
        "efficientnetv2",
        _params,
        aliases=(f"tf_efficientnetv2_{_v}", f"effnetv2{_v}", f"effnetv2_{_v}"),
    )

# EfficientNet (Tan & Le 2019): Rescaling(1/255) and Normalization built in, so 0–255 in.
# BatchNorm momentum 0.99 (Keras's default).
for _variant, _params in {
    "B0": 4_049_571,
    "B1": 6_575_239,
    "B2": 7_768_569,
    "B3": 10_783_535,
    "B4": 17_673_823,
    "B5": 28_513_527,
    "B6": 40_960_143,
    "B7": 64_097_687,
}.items():
    _v = _variant.lower()
    _keras_entry(
        f"EfficientNet{_variant}",
        "efficientnet",
        _params,
        include_preprocessing=None,  # always built in; the constructor has no such argument
        aliases=(f"tf_efficientnet_{_v}", f"effnet{_v}"),
    )

# MobileNetV3 (Howard et al. 2019): include_preprocessing maps 0–255 to −1..1.
# BatchNorm momentum 0.999, far too slow for training from scratch (see create()).
_keras_entry("MobileNetV3Small", "mobilenetv3", 939_120, aliases=("mobilenetv3_small_100",))
_keras_entry("MobileNetV3Large", "mobilenetv3", 2_996_352, aliases=("mobilenetv3_large_100",))

# ResNet50V2 (He et al. 2016, pre-activation): no built-in preprocessing; wants −1..1 ("tf" mode).
_keras_entry(
    "ResNet50V2",
    "resnetv2",
    23_564_800,
    preprocessing="tf",
    input_range=(-1.0, 1.0),
    include_preprocessing=None,
    aliases=("resnetv2_50",),
)

# DenseNet121 (Huang et al. 2017): no built-in preprocessing; wants ImageNet mean/std ("torch" mode).
_keras_entry(
    "DenseNet121",
    "densenet",
    7_037_504,
    preprocessing="torch",
    input_range=(-2.12, 2.64),
    include_preprocessing=None,
)

# ConvNeXt Tiny (Liu et al. 2022): include_preprocessing normalises 0–255 inside; LayerNorm, no BatchNorm.
_keras_entry("ConvNeXtTiny", "convnext", 27_820_128, aliases=("convnext_t",))
