"""Pipeline layouts (`pipeline_model_parallel_layout`) the way Megatron-Bridge v0.3.0 chooses and Megatron-Core
0.16.0 checks them. Pure functions, no I/O.

A layout string lists the pipeline stages in order, `|` between stages: `E` embedding, `t` decoder layer,
`m` MTP layer, `L` loss; `x*N` and `(...)*N` repeat. Megatron-Core splits the stages over pp ranks and
derives the virtual stages from their count (`PipelineParallelLayerLayout`, transformer_config.py
`__post_init__`): the number of stages must be a multiple of pp, an explicit vp must equal stages / pp,
and the layout must hold the model's decoder and MTP layers, embedding first and loss last.

DeepSeek-V3 is the recipe that uses layouts. Its recipe (recipes/deepseek/deepseek_v3.py
`set_deepseek_v3_pipeline_model_parallel_layout`) picks a layout from a map keyed by (pp, vp); the
performance scripts (scripts/performance/utils/overrides.py) re-run that choice whenever -pp or -vp is
given, and a (pp, vp) outside the map keeps the layout the preset was built with. That is why the GB300
preset's pp = 2, vp = 8 runs: the map has no (2, 8), and the preset's own 16-stage layout fits 2 x 8.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["DEEPSEEK_V3_LAYOUTS", "Layout", "deepseek_v3_layout", "parse_layout"]

# The recipe's map (pp, vp) -> layout, as strings (mtp_num_layers = 1: the last stage ends "mL").
DEEPSEEK_V3_LAYOUTS: dict[tuple[int, int], str | None] = {
    (1, 1): None,
    (4, 1): "Et*16|t*16|t*16|t*13mL",
    (8, 1): "Et*8|(t*8|)*6t*5mL",
    (4, 2): "Et*8|(t*8|)*6t*5mL",
    (16, 1): "Et*4|(t*4|)*14tmL",
    (8, 2): "Et*4|(t*4|)*14tmL",
    (4, 4): "Et*4|(t*4|)*14tmL",
}

_GROUP = re.compile(r"\(([^()]*)\)\*(\d+)")
_SYMBOL = re.compile(r"([A-Za-z])\*(\d+)")


@dataclass(frozen=True)
class Layout:
    """A parsed layout: the stages in order, each a string of layer symbols."""

    text: str
    stages: tuple[str, ...]

    @property
    def decoder_layers(self) -> int:
        return sum(s.count("t") for s in self.stages)

    @property
    def mtp_layers(self) -> int:
        return sum(s.count("m") for s in self.stages)

    def problem(self, pp: int, vp: int | None, num_layers: int | None, mtp_layers: int) -> str | None:
        """Why Megatron-Core would refuse this layout at (pp, vp), or None when it accepts it."""
        n = len(self.stages)
        if pp < 1 or n % pp:
            return f"pipeline layout '{self.text}' has {n} stages, not a multiple of pp = {pp}"
        if vp is not None and vp > 1 and vp != n // pp:
            return f"pipeline layout '{self.text}' has {n} stages = pp {pp} x vp {n // pp}, not vp = {vp}"
        flat = "".join(self.stages)
        if not flat.startswith("E") or not flat.endswith("L") or flat.count("E") != 1 or flat.count("L") != 1:
            return f"pipeline layout '{self.text}' must start with the embedding E and end with the loss L"
        if num_layers is not None and self.decoder_layers != num_layers:
            return f"pipeline layout '{self.text}' holds {self.decoder_layers} decoder layers, the model {num_layers}"
        if self.mtp_layers != mtp_layers:
            return f"pipeline layout '{self.text}' holds {self.mtp_layers} MTP layers, the model {mtp_layers}"
        return None


@lru_cache(maxsize=256)
def parse_layout(text: str) -> Layout:
    """Expand the repetitions of a layout string and split it into stages (ValueError when malformed)."""
    body = str(text).replace(",", "").replace(" ", "")
    for _ in range(64):
        expanded = _GROUP.sub(lambda m: m.group(1) * int(m.group(2)), body)
        if expanded == body:
            break
        body = expanded
    body = _SYMBOL.sub(lambda m: m.group(1) * int(m.group(2)), body)
    if re.search(r"[()*]", body) or not re.fullmatch(r"[EtmLe|]*", body):
        raise ValueError(f"malformed pipeline layout '{text}'")
    return Layout(str(text), tuple(body.split("|")))


def deepseek_v3_layout(pp: int, vp: int | None, *, flags_given: bool, built_with: str | None) -> str | None:
    """The layout a DeepSeek-V3 run ends up with.

    `built_with` is the layout the preset built the model with (the preset's own, else the map's entry for
    the preset's (pp, vp)); `flags_given` says whether -pp or -vp was passed, which re-runs the map look-up.
    """
    if not flags_given:
        return built_with
    key = (pp, vp or 1)
    return DEEPSEEK_V3_LAYOUTS.get(key, built_with)
