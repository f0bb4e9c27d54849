"""The controls as one value (demo/controls.py): read from the widgets in one place, with the
event's API taking one parameter per widget."""

from __future__ import annotations

import inspect

import gradio as gr
import pytest

from demo.controls import WIDGETS, Controls, clip_widgets, image_widgets


def handler(image, controls: Controls, point=None, request: gr.Request = None):
    return image, controls, point, request


def test_an_event_takes_one_parameter_per_widget_in_place_of_the_controls():
    """Catches a widget left out of (or moved in) the event's parameters: the API's names and
    the page's inputs are the fields of Controls, in their order, where ``controls`` stood."""
    event = image_widgets(handler)
    parameters = list(inspect.signature(event).parameters)
    assert parameters == ["image", *WIDGETS, "point", "request"]
    assert WIDGETS == ("budget", "groups", "lam", "grouping", "dynamic")
    assert event.__annotations__["request"] is gr.Request and "controls" not in event.__annotations__
    assert event.__name__ == "handler"


def test_the_handler_gets_one_value_read_from_the_widgets():
    image, controls, point, request = image_widgets(handler)("img", 64, 0, 0, "kmeans", True, point=(3, 4))
    assert (image, point, request) == ("img", (3, 4), None)
    assert controls == Controls(budget=64, groups=0, lam=0.0, grouping="kmeans", dynamic=True)
    press = controls.press(phi_ref=0.5)
    assert (press.budget, press.groups, press.lam, press.grouping, press.dynamic, press.phi_ref) == (64, None, None, "kmeans", True, 0.5)
    assert Controls(budget=32, groups=6, lam=2.0).press(phi_ref=0.5).phi_ref is None  # phi_ref only with the dynamic budget


def test_a_generator_handler_stays_a_generator():
    """Catches the adapter returning the generator object from a plain function (Gradio
    would then not stream the answer)."""

    def streamed(message, controls):
        yield message, controls.budget

    event = image_widgets(streamed)
    assert inspect.isgeneratorfunction(event)
    assert list(event("hi", 16, 0, 0, "psca", False)) == [("hi", 16)]


def test_each_section_holds_n_to_its_own_range():
    """Catches the clip's events reading N with the image's range (8..576) or the reverse."""
    assert clip_widgets(handler)("clip", 2, 0, 0, "psca", False)[1].budget == 2
    with pytest.raises(ValueError, match="budget must be between 8 and 576, got 2"):
        image_widgets(handler)("img", 2, 0, 0, "psca", False)
    with pytest.raises(ValueError, match="budget must be between 2 and 256, got 300"):
        clip_widgets(handler)("clip", 300, 0, 0, "psca", False)
