"""Pins that the mutation run of ``prunesid/methods`` showed missing: each test names the
mistake it catches (a survivor of ``mutmut run 'prunesid.methods*'``, docs/testing.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from prunesid.methods import PRESSES, Press, PressInfo, VisionTokens, method_choices, options_of, presses
from prunesid.methods.prunesid import PruneSID
from prunesid.methods.registry import build_press, register_press
from prunesid.methods.visionzip import VisionZip, zip_view


# --- base.py ------------------------------------------------------------------------------


KEEP_CLS_DEFAULTS = {"prunesid": True, "visionzip": True, "divprune": False, "random": True, "uniform": True}


@pytest.mark.parametrize("method", sorted(KEEP_CLS_DEFAULTS))
def test_every_keep_cls_is_spelled_cls_and_tagged_cls(method):
    """``keep_cls_option`` losing its default, help, ``--cls`` alias or "CLS" tag (the CLI's
    ``--no-cls``, the result tables' tag and each method's own default would change)."""
    (spec,) = [spec for spec in options_of(presses()[method]) if spec.name == "keep_cls"]
    assert spec.default is KEEP_CLS_DEFAULTS[method]
    assert spec.flags == ["--keep-cls", "--cls"]
    assert spec.declaration.tag == "CLS"
    assert "CLS" in spec.help and len(spec.help) > 40


def test_about_cites_the_paper_only_when_there_is_one():
    """``PressInfo.about`` putting "()" or a placeholder after a baseline of no paper, or
    dropping the citation of one that has a paper."""
    assert presses()["random"].info.about() == "random: random tokens (floor)"
    assert presses()["divprune"].info.about() == "DivPrune (Alvar et al., CVPR 2025): max-min diversity of the kept tokens (greedy)"


def test_calibrating_a_fixed_budget_prunesid_changes_nothing():
    """``PruneSID.calibrated`` setting phi_ref on a press that is not dynamic (the reference
    would then show in its settings and cache key though it is never read)."""
    press = PruneSID(budget=32)
    assert press.calibrated(0.4) is press
    assert press.calibrated(0.4).phi_ref is None


# --- registry.py --------------------------------------------------------------------------


INFO = PressInfo(label="Scratch", paper="", summary="a test press")


def _body(**namespace):
    return {"__annotations__": {}, "compress": lambda self, tokens: None, "info": INFO, **namespace}


def test_register_press_refuses_what_is_not_a_press_dataclass(scratch_registry):
    """``register_press``'s class test with ``or`` for an ``and``: a dataclass that is no
    Press, or no class at all, must get the "dataclass subclass of Press" refusal."""
    not_a_press = dataclass(frozen=True)(type("NotAPress", (), _body()))
    for refused in (42, not_a_press):
        with pytest.raises(TypeError, match=r"^register_press\('odd'\) takes a dataclass subclass of Press, got "):
            register_press("odd")(refused)
    assert "odd" not in PRESSES


def test_register_press_appends_the_options_to_the_docstring(scratch_registry):
    """The docstring's options section mangled (``lstrip``, ``and`` for ``or``, another heading
    or joiner): ``help(PruneSID)`` and the API docs read it."""
    cls = register_press("scratch")(dataclass(frozen=True)(type("Scratch", (Press,), _body(__doc__="A scratch press.\n\n"))))
    assert cls.__doc__.startswith("A scratch press.\n\n    Options (declared on the fields):\n        budget: N, visual")
    lines = cls.__doc__.split("\n")
    assert [line.split(":")[0] for line in lines[3:5]] == ["        budget", "        keep_cls"]


def test_build_press_names_the_option_as_shown():
    """``build_press`` handing ``parse`` no ``shown`` (the error would say ``groups``, not
    the flag the user typed)."""
    with pytest.raises(ValueError, match=r"^--groups must be an integer or None, got 'abc'$"):
        build_press("prunesid", {"groups": "abc"}, shown=lambda name: "--" + name)


def test_build_press_keeps_the_press_type_error_message(scratch_registry):
    """``build_press`` turning a press's TypeError into a ValueError without its message."""

    def refuse(self):
        raise TypeError("width and depth clash")

    register_press("picky")(dataclass(frozen=True)(type("Picky", (Press,), _body(__post_init__=refuse))))
    with pytest.raises(ValueError, match=r"^width and depth clash$"):
        build_press("picky", {"budget": "8"})


def test_a_menu_entry_builds_its_press_at_the_budget_with_the_settings_given():
    """``MethodChoice.press`` dropping the budget or the caller's settings."""
    (dyn,) = [choice for choice in method_choices() if choice.label == "PruneSID-Dyn"]
    press = dyn.press(48, seed=3)
    assert (press.budget, press.dynamic, press.seed) == (48, True, 3)


def test_menu_entries_carry_their_label_and_line():
    """``method_choices`` leaving out a press's or a variant's label or one-line description."""
    choices = {choice.label: choice for choice in method_choices()}
    assert choices["PruneSID"].about == PruneSID.info.about()
    dyn = choices["PruneSID-Dyn"]
    assert (dyn.method, dyn.settings) == ("prunesid", {"dynamic": True})
    assert dyn.about == "PruneSID-Dyn: budget ∝ the image's information φ, N on average"


# --- visionzip.py -------------------------------------------------------------------------


def _tokens(batch=1, length=16, width=4, dtype=torch.float32, seed=0, **fields):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, length, width, generator=generator).to(dtype)
    importance = torch.rand(batch, length, generator=generator)
    return VisionTokens(features=features, importance=importance, **fields)


def test_visionzip_with_no_room_for_dominant_tokens_keeps_only_contextual_ones():
    """``zip_view`` with ``dominant == 0`` keeping a token anyway (``new_zeros(1)``) or
    building a float or ill-shaped index (the CLS + contextual-only split must work)."""
    press = VisionZip(budget=4, contextual=3)
    result = press.compress(_tokens(cls_slot=True))
    assert result.indices[0].numel() == 0 and result.indices[0].dtype == torch.long
    assert result.merged[0].shape == (3, 4)
    assert int(result.targets[0].sum()) == 3


def test_visionzip_takes_as_many_anchors_as_asked_when_few_tokens_remain():
    """The anchor stride at least 2 (``max(2, ...)``): with fewer than twice as many remaining
    tokens as contextual ones, every other token would leave anchors missing."""
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    importance = torch.arange(10.0)
    kept, anchors, others, joined, merged = zip_view(x, importance, x, 4, 4)  # 6 remain, 4 anchors
    assert kept.tolist() == [6, 7, 8, 9]
    assert anchors.tolist() == [0, 1, 2, 3] and others.tolist() == [4, 5]
    assert merged.shape == (4, 4)


def test_visionzip_results_have_bool_anchors_and_the_input_dtype():
    """``targets`` made without ``dtype=torch.bool`` (float anchors) and contextual tokens
    not cast back to the features' dtype (``.to(None)``: float32 from float64 input)."""
    result = VisionZip(budget=8).compress(_tokens(dtype=torch.float64))
    assert result.targets.dtype == torch.bool and result.merged_from.dtype == torch.long
    assert result.merged[0].dtype == torch.float64


def test_visionzip_view_keeping_everything_merges_an_empty_d_wide_block():
    """A view that keeps every token gets ``merged`` of shape ``[0, D]``, not ``[0]``
    (``new_zeros(0, )``), so it concatenates with the other views' contextual tokens."""
    valid = torch.ones(2, 16, dtype=torch.bool)
    valid[1, 3:] = False  # view 1 holds 3 tokens, fewer than its budget
    result = VisionZip(budget=8, keep_cls=False).compress(_tokens(batch=2, valid=valid))
    assert result.merged[1].shape == (0, 4)
    assert result.indices[1].tolist() == [0, 1, 2]


def test_visionzip_on_a_masked_view_measures_similarity_among_its_own_tokens():
    """With some tokens not selectable, the merge metric (``keys``) read for the whole view
    instead of its selectable tokens (``(every) or True``): local indices would then point at
    other tokens' keys. The view must merge exactly as ``zip_view`` on its gathered tokens."""
    generator = torch.Generator().manual_seed(3)
    valid = torch.ones(1, 16, dtype=torch.bool)
    valid[0, :5] = False
    tokens = _tokens(valid=valid, keys=torch.randn(1, 16, 4, generator=generator))
    result = VisionZip(budget=6, contextual=3, keep_cls=False).compress(tokens)
    candidates = torch.arange(5, 16)
    kept, anchors, others, joined, merged = zip_view(
        tokens.features[0, candidates], tokens.importance[0, candidates].float(), tokens.keys[0, candidates], 3, 3
    )
    assert result.indices[0].tolist() == candidates[kept].tolist()
    assert result.merged_from[0, candidates[others]].tolist() == joined.tolist()
    assert torch.equal(result.merged[0], merged)
    assert result.merged_from[0, :5].tolist() == [-1] * 5


def test_visionzip_scores_are_the_cls_attention_zeroed_off_the_selectable_tokens():
    """``scores`` dropped, or filled on the selectable tokens / with 1.0 instead of zero on
    the others (the overlays draw these scores)."""
    valid = torch.ones(1, 16, dtype=torch.bool)
    valid[0, 10:] = False
    tokens = _tokens(valid=valid)
    scores = VisionZip(budget=6, keep_cls=False).compress(tokens).scores
    assert torch.equal(scores[0, :10], tokens.importance[0, :10])
    assert scores[0, 10:].tolist() == [0.0] * 6


# --- base.py: inputs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("needed", "field", "value"),
    [("attention_keys", "keys", torch.zeros(1, 4, 2)), ("projector", "project", lambda x: x), ("patch_grid", "grid_shapes", [(2, 2)])],
)
def test_an_input_is_available_exactly_when_its_field_is_given(needed, field, value):
    """``VisionTokens.available`` with a misspelt key or an inverted test for keys, the
    projector or the patch grid (a press would be refused, or run without what it needs)."""
    bare = VisionTokens(features=torch.zeros(1, 4, 2))
    given = VisionTokens(features=torch.zeros(1, 4, 2), **{field: value})
    assert (bare.available(needed), given.available(needed)) == (False, True)


# --- floors.py ----------------------------------------------------------------------------


@pytest.mark.parametrize("grid", [(1, 16), (16, 1), (2, 8)])
def test_uniform_takes_a_one_row_or_one_column_grid(grid):
    """``_grid_shape`` refusing a grid of one row or one column (``rows <= 1`` / ``< 2``)."""
    tokens = VisionTokens(features=torch.randn(1, 16, 3), grid_shapes=[grid])
    assert presses()["uniform"](budget=4, keep_cls=False).compress(tokens).indices[0].numel() == 4


@pytest.mark.parametrize("grid", [(0, 4), (4, 0), (5, 4)])
def test_uniform_refuses_a_grid_that_does_not_fit(grid):
    """``_grid_shape``'s checks joined with ``and``: an empty side, or a grid larger than the
    view, must be refused whatever the other side."""
    tokens = VisionTokens(features=torch.randn(1, 16, 3), grid_shapes=[grid])
    with pytest.raises(ValueError, match=r"does not fit a view of 16 tokens"):
        presses()["uniform"](budget=4, keep_cls=False).compress(tokens)


@pytest.mark.parametrize(
    ("rows", "cols", "count", "expected"),
    [
        (2, 16, 2, [20, 28]),  # a wide strip: one lattice row, spread along it (not ``max(2, ...)`` rows)
        (4, 2, 4, [0, 1, 5, 6]),  # 3 x 2 lattice, every 6/4-th point (not 2 x 2 when b == width)
        (2, 9, 10, [0, 1, 3, 5, 7, 9, 10, 12, 14, 16]),  # b = 10 > 9 columns: clipped to 9, a = 2 rows
    ],
)
def test_lattice_points_on_full_grids(rows, cols, count, expected):
    """``lattice``'s shape rules: at least one row (``max(1, ...)``, not 2), a lattice as wide
    as the grid left alone (``b > width``, not ``>=``), and a lattice wider than the grid
    clipped to it with ``ceil(count / width)`` rows (the clipping branch, never reached by the
    presses' own tests). Worked by hand from the docstring's rule."""
    from prunesid.methods.floors import lattice

    assert lattice(torch.ones(rows * cols, dtype=torch.bool), rows, cols, count).tolist() == expected


def test_lattice_covers_the_bounding_box_of_right_hand_columns():
    """The box's width as ``max_col + left + 1`` (not ``- left``): with only columns 2-3 of a
    4 x 4 grid selectable, the points stay in those columns, at their centres."""
    from prunesid.methods.floors import lattice

    valid = torch.zeros(4, 4, dtype=torch.bool)
    valid[:, 2:] = True
    assert lattice(valid.flatten(), 4, 4, 2).tolist() == [7, 15]
    assert lattice(valid.flatten(), 4, 4, 4).tolist() == [2, 3, 11, 14]


def test_lattice_keeps_every_token_when_the_budget_holds_them_all():
    """``count > n`` for ``>=``: a view with exactly ``count`` selectable tokens is returned
    whole, even with tokens beyond its grid (the lattice would refuse them)."""
    from prunesid.methods.floors import lattice

    assert lattice(torch.ones(16, dtype=torch.bool), 3, 3, 16).tolist() == list(range(16))


def test_lattice_refuses_tokens_beyond_the_grid():
    """``>`` for ``>=`` in the beyond-the-grid test (token 9 of a 3 x 3 grid is the first
    outside it), and the refusal's message."""
    from prunesid.methods.floors import lattice

    valid = torch.zeros(16, dtype=torch.bool)
    valid[:10] = True
    with pytest.raises(ValueError, match=r"^selectable tokens lie beyond the 3 x 3 patch grid of the view$"):
        lattice(valid, 3, 3, 4)


# --- registry.py: what the overlays read off a result -------------------------------------


def test_a_result_is_traced_back_to_its_press_declaration():
    """``info_of`` / ``drawn_anchors`` / ``has_groups`` (the overlays' only way to know what
    to draw) returning another press's declaration, or something for an unknown method."""
    from types import SimpleNamespace

    from prunesid.methods.registry import drawn_anchors, has_groups, info_of

    targets = torch.tensor([[True, False]])
    zipped = SimpleNamespace(method="visionzip", targets=targets)
    selected = SimpleNamespace(method="prunesid", targets=targets)
    unknown = SimpleNamespace(method="nobody", targets=targets)
    assert info_of(zipped) is VisionZip.info and info_of(selected) is PruneSID.info
    assert info_of(unknown) is None and info_of(object()) is None
    assert drawn_anchors(zipped) is targets
    assert drawn_anchors(selected) is None and drawn_anchors(unknown) is None
    assert (has_groups(selected), has_groups(zipped), has_groups(unknown)) == (True, False, False)


def test_a_per_view_press_without_a_decision_says_so():
    """``PerViewPress.keep_view``'s refusal naming the class that gives neither method."""
    from prunesid.methods import PerViewPress

    cls = dataclass(frozen=True)(type("Undecided", (PerViewPress,), {"__annotations__": {}, "info": INFO}))
    with pytest.raises(NotImplementedError, match=r"^Undecided gives neither keep_view nor compress_views$"):
        cls(budget=4, keep_cls=False).compress(VisionTokens(features=torch.zeros(1, 8, 2)))


def test_a_lattice_point_on_a_masked_token_moves_to_the_nearest_free_one():
    """The miss path of ``lattice``: the squared Euclidean distance on the grid (a ``-``,
    ``* 2``, ``** 3`` or ``+ r`` / ``+ c`` in it, or rows and columns read with ``/``, picks
    a far token), ties to the lowest index. Lattice point (1, 1) of a 4 x 4 grid is masked,
    as are (0, 1) and (1, 0): its nearest free tokens are (1, 2) and (2, 1), and (1, 2) = 6
    comes first."""
    from prunesid.methods.floors import lattice

    valid = torch.ones(16, dtype=torch.bool)
    valid[[1, 4, 5]] = False
    assert lattice(valid, 4, 4, 4).tolist() == [6, 7, 13, 15]


def test_lattice_points_on_selectable_tokens_are_taken_before_misses_move():
    """Every lattice point taken as a miss (``bool(None)``): a moved point would then take a
    token that a later lattice point sits on, pushing that one elsewhere. (A case found by
    search over random masks of a 4 x 4 grid; the expected set is the one the rule gives.)"""
    from prunesid.methods.floors import lattice

    valid = torch.zeros(16, dtype=torch.bool)
    valid[[0, 1, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15]] = True
    assert lattice(valid, 4, 4, 11).tolist() == [0, 1, 4, 6, 7, 8, 9, 10, 13, 14, 15]


def test_lattice_indices_are_long():
    """The lattice's indices are long, with or without a moved point (they index the view's
    tokens). Dropping ``dtype=torch.long`` is equivalent today (a tensor of Python ints is
    long); this pins the type should ``taken`` ever be built otherwise."""
    from prunesid.methods.floors import lattice

    valid = torch.ones(16, dtype=torch.bool)
    valid[5] = False
    assert lattice(valid, 4, 4, 4).dtype == torch.long
    assert lattice(torch.ones(16, dtype=torch.bool), 4, 4, 4).dtype == torch.long


def test_visionzip_refusal_without_cls_attention_says_why():
    """The refusal's text (which inputs are missing and what to do) mangled."""
    tokens = VisionTokens(features=torch.randn(1, 16, 4))
    message = (
        "VisionZip chooses its dominant tokens by the CLS token's attention, and these tokens come without it (a vision "
        "tower without a CLS token, e.g. SigLIP or Qwen-VL); use another method"
    )
    with pytest.raises(ValueError) as refused:
        VisionZip(budget=8).compress(tokens)
    assert str(refused.value) == message


def test_visionzip_contextual_bound_is_the_budget_less_the_cls():
    """``contextual > room`` as ``>=`` (all-contextual refused), and the refusal naming
    ``budget - 1 (the CLS)`` only when the CLS takes a slot."""
    assert VisionZip(budget=8, contextual=7).contextual_tokens == 7
    assert VisionZip(budget=8, contextual=8, keep_cls=False).contextual_tokens == 8
    with pytest.raises(ValueError) as with_cls:
        VisionZip(budget=8, contextual=8)
    assert str(with_cls.value) == "contextual must be at most budget - 1 (the CLS) = 7, got 8"
    with pytest.raises(ValueError) as without_cls:
        VisionZip(budget=8, contextual=9, keep_cls=False)
    assert str(without_cls.value) == "contextual must be at most budget = 8, got 9"


# --- divprune.py --------------------------------------------------------------------------


def test_cosine_distance_is_one_minus_cosine_similarity():
    """``cosine_distances`` as ``2 - cos`` (the greedy's picks would not change, the
    documented distances would: 0 for a token and itself, 1 for orthogonal tokens)."""
    from prunesid.methods.divprune import cosine_distances

    x = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]]])
    assert torch.allclose(cosine_distances(x), torch.tensor([[[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]]]))


def test_divprune_rank_marks_untaken_tokens_minus_one():
    """``rank`` filled with ``-2`` (or not long) for the tokens the greedy did not take: -1
    is the documented "not taken" (and ``TOKEN_FIELDS``' padding)."""
    from prunesid.methods.divprune import DivPrune

    tokens = VisionTokens(features=torch.randn(1, 12, 4, generator=torch.Generator().manual_seed(0)))
    result = DivPrune(budget=4, space="tower").compress(tokens)
    rank = result.rank[0]
    assert rank.dtype == torch.long
    assert sorted(rank[rank >= 0].tolist()) == [0, 1, 2, 3]
    assert rank[rank < 0].tolist() == [-1] * 8


def test_divprune_first_pick_is_farthest_from_its_nearest_neighbour():
    """The first pick scored by the second-nearest other token (``topk(..., 3)``) instead of
    the nearest (the authors' rule). Unit vectors at 0, 2, 90, 150 and 160 degrees: the token
    at 90 is farthest from its nearest neighbour (60 degrees); the one at 0 is farthest from
    its second-nearest (90 degrees)."""
    import math

    from prunesid.methods.divprune import max_min_greedy

    angles = torch.tensor([0.0, 2.0, 90.0, 150.0, 160.0]) * math.pi / 180
    x = torch.stack([angles.cos(), angles.sin()], dim=-1)[None]
    assert max_min_greedy(x, torch.ones(1, 5, dtype=torch.bool), 1).tolist() == [[2]]


def test_divprune_takes_the_one_token_of_a_one_token_view():
    """A view of one token (``topk`` of one value, read at ``[:, +1]`` instead of the last)."""
    from prunesid.methods.divprune import DivPrune

    result = DivPrune(budget=4, space="tower").compress(VisionTokens(features=torch.randn(2, 1, 4)))
    assert [index.tolist() for index in result.indices] == [[0], [0]]


# --- common.py / registry.py: budgets and menu order ----------------------------------------


def test_a_view_whose_budget_is_all_cls_is_refused():
    """``budgets``' test as ``<`` for ``<=`` and its message: under "qwen2-vl" a view of one
    token gets an effective budget of 1, which the passed-through CLS would take whole."""
    tokens = VisionTokens(features=torch.randn(1, 1, 4), cls_slot=True, preset="qwen2-vl")
    with pytest.raises(ValueError) as refused:
        presses()["random"](budget=8).compress(tokens)
    assert str(refused.value) == "budget must exceed the 1 reserved token(s) (the CLS), got 8"


def test_presses_of_the_same_order_are_listed_by_name(scratch_registry):
    """``presses()`` breaking ties in menu order by the class instead of the name (classes do
    not compare: two plug-ins of the default order would make every menu raise)."""
    for name in ("zeta", "alpha"):
        register_press(name)(dataclass(frozen=True)(type(name.title(), (Press,), _body())))
    names = list(presses())
    assert names.index("alpha") + 1 == names.index("zeta")


def test_a_per_view_result_names_its_method_and_budget():
    """``PerViewPress.result`` dropping the budget per view or the method's name (the
    overlays and reports read both off the result)."""
    result = presses()["random"](budget=5, keep_cls=False).compress(VisionTokens(features=torch.randn(2, 9, 3)))
    assert result.method == "random"
    assert result.budget.tolist() == [5, 5] and result.budget.dtype == torch.long


def test_compressing_what_is_not_vision_tokens_names_its_type():
    """``validated``'s TypeError without its message or naming ``NoneType``."""
    with pytest.raises(TypeError) as refused:
        presses()["random"](budget=5).compress(torch.zeros(1, 4, 2))
    assert str(refused.value) == "a press compresses prunesid.VisionTokens, got Tensor"


@pytest.mark.parametrize(
    ("features", "shown"),
    [([[0.0]], "list"), (torch.zeros(4, 2), "torch.Size([4, 2])"), (torch.zeros(1, 4, 2, dtype=torch.long), "torch.Size([1, 4, 2])")],
)
def test_features_that_are_no_float_b_t_d_tensor_are_refused_by_what_they_are(features, shown):
    """``validated``'s feature test with ``and`` for an ``or`` (a 2-D float tensor, an integer
    tensor or a list let through) and its message (the shape, or the type without one)."""
    with pytest.raises(ValueError) as refused:
        presses()["random"](budget=5).compress(VisionTokens(features=features))
    assert str(refused.value) == f"features must be a float tensor [B, T, D], got {shown}"


def test_a_moved_lattice_point_measures_columns_as_columns():
    """The miss path's grid columns read as ``index / cols`` instead of ``index % cols``
    (a case found by search over random masks of a 4 x 4 grid; the expected set is the one
    the nearest-free rule gives)."""
    from prunesid.methods.floors import lattice

    valid = torch.zeros(16, dtype=torch.bool)
    valid[[0, 1, 5, 6, 7, 8, 9, 11, 15]] = True
    assert lattice(valid, 4, 4, 3).tolist() == [5, 7, 9]
