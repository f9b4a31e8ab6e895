"""`augpipe transforms`: what a recipe may use, read from albumentations itself."""

from __future__ import annotations

import inspect

GROUPS = ("geometric", "crops", "colour", "noise and blur", "weather", "dropout", "composition", "other images",
          "other")
_NOISE_AND_BLUR = ("Noise", "Blur", "Sharpen", "Emboss", "Compression", "Downscale", "Superpixels",
                   "SaltAndPepper", "RingingOvershoot", "Spatter", "Defocus", "ChromaticAberration")
_WEATHER = ("RandomFog", "RandomRain", "RandomSnow", "RandomSunFlare", "RandomShadow", "RandomGravel",
            "PlasmaShadow")


def group_of(name: str, cls: type) -> str:
    module = cls.__module__
    if ".geometric." in module:
        return "geometric"
    if ".crops." in module:
        return "crops"
    if ".dropout." in module:
        return "dropout"
    if ".blur." in module or any(k in name for k in _NOISE_AND_BLUR):
        return "noise and blur"
    if name in _WEATHER:
        return "weather"
    if ".pixel." in module:
        return "colour"
    if module.endswith(".composition"):
        return "composition"
    return "other"


def parameters(cls: type) -> list[tuple[str, str]]:
    """(name, default) for each parameter, `required` where there is no default."""
    from augpipe.recipe import init_parameters

    return [(name, "required" if p.default is inspect.Parameter.empty else repr(p.default))
            for name, p in init_parameters(cls).items()]


def catalog() -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """The transforms a recipe may use: not those refused whatever their parameters (needing a
    mask or other images, making float pixels)."""
    from augpipe.recipe import allowed_transforms, refusal

    from augpipe.mixing import registry

    groups: dict[str, list] = {g: [] for g in GROUPS}
    for name, cls in sorted(allowed_transforms().items()):
        if refusal(name) is None and name not in registry():
            groups[group_of(name, cls)].append((name, parameters(cls)))
    for name, mix in registry().items():  # steps that take other images (augpipe.mixing)
        fields = mix.Params.model_fields
        groups["other images"].append((name, [(k, repr(f.default)) for k, f in fields.items()]))
    return {g: items for g, items in groups.items() if items}
