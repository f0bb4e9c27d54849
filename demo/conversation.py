"""The chat's words: questions and histories as a client sends them, checked; the messages
the model reads; and an answer streamed from the model, the same for images and clips.

Gradio-free except for the API's stateless chat (:func:`chat_turns`), which tells the page
to leave the stats as they are while the answer is written.
"""

from __future__ import annotations

import threading

import gradio as gr

from demo.limits import MAX_HISTORY_CHARS, MAX_QUESTION_CHARS, MAX_TURNS


def answers(vlm, media, conversation: list[dict], press, max_new_tokens: int, stop: threading.Event | None, finished):
    """The model's answer about ``media`` (image bytes or a clip): ``(answer so far, None)``
    while it is written, then ``(answer, finished(reply))``. ``stop``, when set, ends it
    early (what is written so far is kept; an empty answer stopped at once stays empty)."""
    kwargs = {} if stop is None else {"stopping_criteria": stopping_criteria(stop)}
    stream = vlm.stream(media, conversation, press=press, max_new_tokens=max_new_tokens, **kwargs)
    answer = ""
    for piece in stream:
        answer += piece
        yield answer, None
    reply = stream.reply
    yield reply.text or ("" if stop is not None and stop.is_set() else "(empty answer)"), finished(reply)


def reply_timings(encoded, reply) -> dict:
    """The stats' timings of an answer: the cached encoding's, the selection's and the prefill's."""
    return {"vision_ms": encoded.vision_ms, "select_ms": reply.timings["select_ms"], "prefill_ms": reply.timings["prefill_ms"]}


def chat_turns(message: str, history: list, answered, markdown_of):
    """The API's stateless chat: the history with the question, then the answer streaming
    into it; the stats stay as they are (``gr.skip``) until the answer is done."""
    history = history + [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    for answer, done in answered:
        history[-1] = {"role": "assistant", "content": answer}
        if done is None:
            yield history, "generating...", gr.skip(), gr.skip()
        else:
            info, stats = done
            yield history, info, stats, markdown_of(stats)


def stopping_criteria(stop: threading.Event):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopWhenAsked(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopWhenAsked()])


def question(message, name: str = "message", hint: str = "type a question") -> str:
    """A question as the model may read it: text, not empty, not too long, valid Unicode."""
    if not isinstance(message, str):
        raise ValueError(f"the {name} must be text, got {type(message).__name__}")
    if not message.strip():
        raise ValueError(f"the {name} is empty: {hint}")
    if len(message) > MAX_QUESTION_CHARS:
        raise ValueError(f"the {name} is {len(message)} characters long; at most {MAX_QUESTION_CHARS} are accepted")
    _valid_text(message, name)
    return message


def chat_history(history) -> list:
    """A chat history sent by a client: a list of at most ``MAX_TURNS`` messages, valid text,
    at most ``MAX_HISTORY_CHARS`` in all."""
    if history is None:
        return []
    if not isinstance(history, (list, tuple)):
        raise ValueError(f"the chat history must be a list of messages, got {type(history).__name__}")
    if len(history) > MAX_TURNS:
        raise ValueError(f"the chat history holds {len(history)} messages; at most {MAX_TURNS} are accepted: start a new chat")
    text = "".join(_text_of(turn.get("content")) if isinstance(turn, dict) else "" for turn in history)
    if len(text) > MAX_HISTORY_CHARS:
        raise ValueError(f"the chat history holds {len(text)} characters; at most {MAX_HISTORY_CHARS} are accepted: start a new chat")
    _valid_text(text, "chat history")
    return list(history)


def _valid_text(text: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: no tokenizer takes it
        raise ValueError(f"the {name} holds a character that is not valid Unicode text at position {error.start}") from None


def _text_of(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "") or ""
    if isinstance(content, (list, tuple)):
        return " ".join(_text_of(part) for part in content)
    return ""


def conversation(history: list, message: str, media: str = "image") -> list[dict]:
    """Gradio chat history + the new message -> chat messages; the image (or the clip, with
    ``media="video"``) rides on the first user turn."""
    messages, placed = [], False
    for turn in history:
        role = turn.get("role") if isinstance(turn, dict) else None
        if role not in ("user", "assistant"):
            continue
        text = _text_of(turn.get("content"))
        if role == "user" and not placed:
            messages.append({"role": "user", "content": [{"type": media}, {"type": "text", "text": text}]})
            placed = True
        else:
            messages.append({"role": role, "content": [{"type": "text", "text": text}]})
    content = [{"type": "text", "text": message}]
    messages.append({"role": "user", "content": content if placed else [{"type": media}] + content})
    return messages


def reply_markdown(reply) -> str:
    timings = reply.timings
    return (
        f"{reply.visual_tokens[0]} visual tokens · vision {timings['vision_ms']:.0f} ms · select "
        f"{timings['select_ms']:.0f} ms · prefill {timings['prefill_ms']:.0f} ms · decode "
        f"{timings['decode_ms']:.0f} ms ({int(timings['new_tokens'])} tokens)"
    )
