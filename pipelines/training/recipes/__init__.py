"""Training recipes by `--model` name. Another family adds itself with `register_recipe(name, cls)`."""

from __future__ import annotations

from .animegan import AnimeGANRecipe
from .base import Phase, Recipe, Update
from .style2paints import Style2PaintsRecipe
from .whitebox import WhiteboxRecipe

RECIPES: dict[str, type[Recipe]] = {
    "animegan": AnimeGANRecipe,
    "animeganv2": AnimeGANRecipe,
    "whitebox": WhiteboxRecipe,
    "style2paints": Style2PaintsRecipe,
}


def register_recipe(model: str, cls: type[Recipe]) -> None:
    RECIPES[model] = cls


def get_recipe_class(model: str) -> type[Recipe]:
    try:
        return RECIPES[model]
    except KeyError:
        raise ValueError(f"unknown model {model!r}; known: {', '.join(sorted(RECIPES))}") from None


__all__ = ["Phase", "RECIPES", "Recipe", "Update", "get_recipe_class", "register_recipe"]
