"""The method switch and "Compare methods" through gradio_client, wired exactly as app.py is
meant to wire them (the components and events below are the recipe; app.py is the page)."""

from __future__ import annotations

import gradio as gr
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from demo.methods import DEFAULT_QUESTION, METHOD_CHOICES, MethodHandlers
from tests.conftest import scene
from viz.merged import LEGEND


def build(methods: MethodHandlers) -> gr.Blocks:
    from demo.handlers import user_errors

    analyze_method = user_errors(methods.analyze)  # app.py: on_gpu(user_errors(...)), as its other handlers
    refresh_method = user_errors(methods.refresh)
    compare_methods = user_errors(methods.compare)
    with gr.Blocks() as page:
        image = gr.Image(type="filepath", label="Image", elem_id="input-image")
        budget = gr.Slider(8, 576, value=64, step=1, label="N", elem_id="budget")
        method = gr.Radio(METHOD_CHOICES, value="PruneSID", label="Method", elem_id="method")
        with gr.Tab("By method"):
            method_view = gr.Image(label="Kept by the chosen method", elem_id="method-view", interactive=False)
            gr.Markdown(f"<small>{LEGEND}</small>")
            method_table = gr.Markdown(elem_id="method-stats")
            method_json = gr.JSON(visible=False)
        with gr.Accordion("Compare methods", open=False):
            methods_question = gr.Textbox(label="Question for every method", value=DEFAULT_QUESTION, elem_id="methods-question")
            methods_button = gr.Button("Compare methods at this budget", elem_id="compare-methods")
            methods_sheet = gr.Image(label="Kept patches per method", interactive=False, elem_id="methods-comparison")
            methods_table = gr.Markdown(elem_id="methods-table")
            methods_json = gr.JSON(visible=False)
        with gr.Row(visible=False):
            api_method = gr.Button("analyze_method")
        raw = {"preprocess": False}
        hidden = {"api_visibility": "private"}
        method_outputs = [method_view, method_json, method_table]
        for control in (method, budget):
            control.change(refresh_method, [image, method, budget], method_outputs, trigger_mode="always_last", show_progress="hidden", **hidden, **raw)
        image.change(refresh_method, [image, method, budget], method_outputs, **hidden, **raw)
        api_method.click(analyze_method, [image, method, budget], method_outputs, api_name="analyze_method", **raw)
        methods_button.click(compare_methods, [image, methods_question, budget], [methods_sheet, methods_table, methods_json], api_name="compare_methods", **raw)
    return page


@pytest.fixture(scope="module")
def client(tiny_vlm):
    page = build(MethodHandlers(tiny_vlm, phi_ref=0.5, max_new_tokens=2))
    page.queue(default_concurrency_limit=2)
    _, url, _ = page.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield Client(url, verbose=False)
    finally:
        page.close()


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("methods-api") / "scene.png"
    scene(640, 480, seed=21).save(path)
    return path


def test_compare_methods_endpoint(client, image_file):
    sheet, table, rows = client.predict(image=handle_file(str(image_file)), question="What is in it?", budget=32, api_name="/compare_methods")
    with Image.open(sheet) as drawn:
        assert drawn.width >= 3 * 640 and drawn.height >= 2 * 480
    assert [row["method"] for row in rows] == ["all tokens"] + METHOD_CHOICES
    assert all(row["visual_tokens"] == 32 for row in rows[1:] if row["method"] != "PruneSID-Dyn")
    assert all(row["prefill_ms"] > 0 and "answer" in row for row in rows)
    assert table.startswith("| Method |")


def test_the_switch_changes_the_kept_view(client, image_file):
    drawn = {}
    for method in ("VisionZip", "DivPrune", "uniform"):
        view, stats, table = client.predict(image=handle_file(str(image_file)), method=method, budget=64, api_name="/analyze_method")
        assert stats["method"] == method and stats["visual_tokens"] == 64
        with Image.open(view) as picture:
            drawn[method] = picture.tobytes()
    assert len(set(drawn.values())) == 3


def test_errors_come_back_as_messages(client, image_file):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="question is empty"):
        client.predict(image=handle_file(str(image_file)), question="   ", budget=32, api_name="/compare_methods")
    with pytest.raises(AppError, match="method must be one of"):
        client.predict(image=handle_file(str(image_file)), method="FastV", budget=32, api_name="/analyze_method")
