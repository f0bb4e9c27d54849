"""What a request is told when Gradio itself, not the app, refuses it.

The app's own refusals are ``gr.Error`` with a message naming the control and the problem
(demo/handlers.py ``user_errors``). Errors raised by Gradio around the app's code (a payload
naming a file it will not move, a value its preprocessing cannot take) would otherwise reach
the client as ``str(error)``: an absolute server path ("Cannot move /srv/app/x.png ..."), the
working directory, or a Python type error. :func:`install` has Gradio answer those with a
fixed sentence instead; the log keeps the details.
"""

from __future__ import annotations

import logging

from demo.files import REFUSED

log = logging.getLogger("prunesid.demo")
MALFORMED = "the request could not be processed: one of its values is not what this control takes"


def wording(error: BaseException | None) -> str | None:
    """The client's text for an error Gradio raised (None for the app's own gr.Error)."""
    from gradio.exceptions import InvalidPathError
    from gradio_client.exceptions import AppError

    if error is None or isinstance(error, AppError):
        return None
    if isinstance(error, InvalidPathError):
        return REFUSED
    return MALFORMED


def install() -> None:
    """Wrap Gradio's error payload (the queue's and the direct route's) with :func:`wording`."""
    import gradio.queueing
    import gradio.utils

    original = getattr(gradio.utils.error_payload, "__wrapped__", gradio.utils.error_payload)

    def error_payload(error, show_error):
        content = original(error, show_error)
        text = wording(error)
        if text is not None and content.get("error") is not None:
            log.warning("refused a request: %s: %s", type(error).__name__, str(error)[:300])
            content["error"] = text
        return content

    error_payload.__wrapped__ = original
    gradio.utils.error_payload = error_payload
    gradio.queueing.error_payload = error_payload
