"""What the Gradio app does, without Gradio layout: model choice and event handlers."""
