"""PruneSID demo: chat with LLaVA through the compressor and see which vision tokens it keeps.

    python app.py [--model llava-hf/llava-1.5-7b-hf] [--port 7860]

The page reads top to bottom: banner, image and controls, the overlays and stats, the chat,
then the comparisons. The work itself lives in demo/handlers.py.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from demo.handlers import GROUPING_CHOICES, Handlers, example_images, user_errors
from demo.model_choice import load_with_fallback, requested_model

try:  # ZeroGPU on Hugging Face Spaces: GPU work is decorated when the package exists.
    import spaces

    on_gpu = spaces.GPU
except ImportError:

    def on_gpu(function):
        return function


CONCURRENCY_LIMIT = 2  # model calls at once; the queue holds the rest
CSS = """
#banner {border-radius: 8px; padding: 4px 12px; background: var(--block-background-fill);}
.overlay img {object-fit: contain;}
"""


def build(handlers: Handlers, banner: str) -> gr.Blocks:
    analyze = on_gpu(user_errors(handlers.analyze))
    refresh = on_gpu(user_errors(handlers.refresh))
    chat = on_gpu(user_errors(handlers.chat))
    compare_groupings = on_gpu(user_errors(handlers.compare_groupings))
    compare_answers = on_gpu(user_errors(handlers.compare_answers))

    with gr.Blocks(title="PruneSID: what the compressor keeps") as page:
        gr.Markdown(
            "# PruneSID — Prune Redundancy, Preserve Essence\n"
            "Training-free compression of a VLM's vision tokens: **PSCA** groups the patches into "
            "concepts, **NMS** inside each concept drops near-duplicates (τ = λ·ρ), and the budget "
            "is shared between concepts. Upload an image, move the controls, ask a question."
        )
        gr.Markdown(banner, elem_id="banner")

        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                image = gr.Image(type="filepath", label="Image", height=320, elem_id="input-image")
                gr.Examples(example_images(), inputs=image, label="Examples (generated, CC0)")
                budget = gr.Slider(8, 576, value=64, step=1, label="N — visual tokens per image (per view on LLaVA-NeXT)", elem_id="budget")
                groups = gr.Slider(0, 144, value=0, step=1, label="K — groups (0 = auto: N/4)", elem_id="groups")
                lam = gr.Slider(0, 18, value=0, step=0.25, label="λ — NMS threshold factor (0 = auto: N/32)", elem_id="lam")
                grouping = gr.Radio(GROUPING_CHOICES, value="psca", label="Grouping (paper's ablation: random / KMeans / PSCA)", elem_id="grouping")
                dynamic = gr.Checkbox(False, label="Dynamic budget (PruneSID-Dyn: N' ∝ φ)", elem_id="dynamic")
                analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze")
            with gr.Column(scale=3, min_width=420):
                with gr.Tabs():
                    with gr.Tab("Kept patches"):
                        kept_view = gr.Image(label="Kept patches (others dimmed)", elem_id="kept-view", elem_classes="overlay", interactive=False)
                    with gr.Tab("PSCA groups"):
                        groups_view = gr.Image(label="Group of every patch", elem_id="groups-view", elem_classes="overlay", interactive=False)
                    with gr.Tab("NMS survivors"):
                        survivors_view = gr.Image(label="Survivors vs suppressed", elem_id="survivors-view", elem_classes="overlay", interactive=False)
                    with gr.Tab("Budget per group"):
                        quotas_view = gr.Image(label="Group sizes, survivors and kept tokens (first view)", elem_id="quotas-view", interactive=False)
                gr.Markdown(
                    "<small>**Kept**: yellow outline, full brightness; dropped patches dimmed. **Groups**: one "
                    "colour per PSCA group, dark borders between groups. **Survivors**: green outline; suppressed "
                    "by NMS: dimmed red. Hatched: cut away by the processor's center crop (the model never sees "
                    "it). Grey: padding around LLaVA-NeXT tiles.</small>"
                )
                stats_table = gr.Markdown(elem_id="stats")
                stats_json = gr.JSON(label="Stats (JSON)", visible=False)

        gr.Markdown("## Chat with the compressed model")
        chatbot = gr.Chatbot(label="Answer", height=300, elem_id="chatbot")
        with gr.Row():
            message = gr.Textbox(placeholder="Ask about the image...", show_label=False, scale=5, elem_id="message")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        reply_info = gr.Markdown(elem_id="reply-info")

        with gr.Accordion("Compare", open=False):
            compare_button = gr.Button("Compare random / KMeans / PSCA at this budget", elem_id="compare-groupings")
            comparison = gr.Image(label="Kept patches per grouping", interactive=False, elem_id="comparison")
            question = gr.Textbox(label="Question for the all-tokens vs compressed comparison", value="Describe the image.")
            answers_button = gr.Button("Answer with all tokens and with the compressed ones", elem_id="compare-answers")
            with gr.Row():
                full_answer = gr.Textbox(label="All visual tokens", interactive=False)
                compressed_answer = gr.Textbox(label="Compressed", interactive=False)
            speedup = gr.Markdown()

        controls = [image, budget, groups, lam, grouping, dynamic]
        overlays = [groups_view, survivors_view, kept_view, quotas_view, stats_json, stats_table]
        # preprocess=False: the handlers read the uploaded file themselves (demo/handlers.py).
        raw = {"preprocess": False}
        analyze_button.click(analyze, controls, overlays, api_name="analyze", **raw)
        image.change(refresh, controls, overlays, api_name=False, **raw)
        image.change(lambda: ([], ""), None, [chatbot, reply_info], api_name=False)  # a new image starts a new chat
        # Live re-render while a control moves; only the latest value is run when busy.
        for control in (budget, groups, lam, grouping, dynamic):
            control.change(refresh, controls, overlays, api_name=False, trigger_mode="always_last", show_progress="hidden", **raw)

        chat_inputs = [message, chatbot] + controls
        chat_outputs = [chatbot, reply_info, stats_json, stats_table]
        send.click(chat, chat_inputs, chat_outputs, api_name="chat", **raw).then(lambda: "", None, message, api_name=False)
        message.submit(chat, chat_inputs, chat_outputs, api_name=False, **raw).then(lambda: "", None, message, api_name=False)

        compare_button.click(compare_groupings, [image, budget, groups, lam, dynamic], comparison, api_name="compare_groupings", **raw)
        answers_button.click(
            compare_answers, [question, image, budget, groups, lam, grouping, dynamic],
            [full_answer, compressed_answer, speedup], api_name="compare_answers", **raw,
        )
    page.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=64)
    return page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model id or built-in (default: $PRUNESID_MODEL, else llava-1.5-7b on GPU, tiny-random on CPU)")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)

    vlm, banner = load_with_fallback(requested_model(args.model))
    handlers = Handlers(vlm, phi_ref=vlm.calibrate(example_images()))
    page = build(handlers, banner)
    page.launch(server_name=args.host, server_port=args.port, theme=gr.themes.Soft(), css=CSS, show_error=True)


if __name__ == "__main__":
    main()
