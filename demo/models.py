"""The model picker: which models a visitor may switch to, and which models are loaded.

Two policies (docs/demo.md, "Switching models"):

- **Hosted** (a public deployment: ``SYSTEM=spaces``, as Hugging Face Spaces set it, or
  ``$PRUNESID_SERVE`` / ``PRUNESID_PUBLIC=1``): what is loaded is the host's choice. The
  host lists the models it serves (``$PRUNESID_SERVE``, comma-separated; by default the
  start-up model and the offline built-ins, each a few MB); all of them are loaded at start
  and stay loaded, and the picker offers only them. A visitor's choice selects among
  resident models: it never loads, unloads or waits for anything, so no visitor's choice
  can evict the model another visitor is using.
- **Local** (otherwise), below: one model loaded at a time, switched on demand.

Local policy:

- The picker lists every offline built-in the registry holds at launch
  (``prunesid.family_kit.builtin_models()``), the model the app started with, ``$PRUNESID_VIDEO_MODEL``
  when set, and, only when the Hugging Face Hub was reachable at launch, the Hub models of
  the app's hardware. A value outside that list is refused.
- The choice is per session (a browser page, or one gradio_client): a visitor's switch
  changes that visitor's model only. Sessions that never chose use the start-up model.
- At most one model is loaded in the process (an LRU of one). A request on another model
  than the loaded one waits until the requests running on the loaded one are done (their
  model is never changed under them), then the loaded one is unloaded and the requested
  one loaded; requests for the old model arriving meanwhile wait behind the switch. Nothing
  waits longer than :data:`~demo.limits.SWITCH_WAIT_S`: then a "busy" error.
- A client may switch at most :data:`~demo.limits.MODEL_SWITCHES` times a minute (a load is
  the most expensive thing a request can cause).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import inspect
import os
import threading
import time
import typing
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from demo.admission import client_of
from demo.files import example_images
from demo.handlers import Handlers, release_memory
from demo.limits import MODEL_SWITCH_WINDOW_S, MODEL_SWITCHES, SWITCH_WAIT_S
from demo.methods import MethodHandlers
from demo.model_choice import CPU_MODEL, GPU_MODEL, ModelChoice, banner, gpu_available, load_chosen, offline_reason
from demo.video import OFFLINE_VIDEO_MODEL, VIDEO_MODEL_ENV, VideoHandlers

SERVE_ENV = "PRUNESID_SERVE"  # the host's served models, comma-separated (implies the hosted policy)
PUBLIC_ENV = "PRUNESID_PUBLIC"  # 1: the hosted policy, serving the default list
MAX_REMEMBERED_SESSIONS = 10_000  # sessions whose choice is kept (the least recent is forgotten)
BUSY = "the server is busy switching models for other visitors: try again in a minute"


@dataclass
class Served:
    """One loaded model and the handlers bound to it."""

    name: str
    vlm: object
    handlers: Handlers
    methods: MethodHandlers
    videos: VideoHandlers | None  # None: the family takes images only
    banner: str

    @classmethod
    def of(cls, vlm, banner_text: str, max_new_tokens: int = 96) -> "Served":
        phi_ref = vlm.calibrate(example_images())
        handlers = Handlers(vlm, phi_ref=phi_ref, max_new_tokens=max_new_tokens)
        methods = MethodHandlers(vlm, phi_ref=phi_ref, max_new_tokens=min(max_new_tokens, 48))
        videos = None
        if vlm.family.num_frames is not None:
            videos = VideoHandlers(vlm, max_new_tokens=max_new_tokens, note=f"Video: `{vlm.name}`, the chosen model: it takes clips.")
        return cls(vlm.name, vlm, handlers, methods, videos, banner_text)

    @property
    def takes_clips(self) -> bool:
        return self.videos is not None

    def clips(self) -> VideoHandlers:
        """The clip handlers; ValueError on a model that takes images only."""
        if self.videos is None:
            raise ValueError(f"{self.name} takes images only: choose a model that takes clips first (the model picker; API: /choose_model)")
        return self.videos


def picker_choices(startup: str, hub_reachable: bool, gpu: bool | None = None) -> list[str]:
    """The picker's entries: the start-up model, the built-ins the registry holds now, and
    the Hub models of this hardware when the Hub is reachable."""
    from prunesid.family_kit import builtin_models

    names = [startup] + [name for name in builtin_models() if name != startup]
    video_model = os.environ.get(VIDEO_MODEL_ENV, "").strip()  # a deployment's clip model (e.g. Video-LLaVA-7B)
    if video_model and video_model not in names:
        names.append(video_model)
    if hub_reachable:
        gpu = gpu_available() if gpu is None else gpu
        for name in ([GPU_MODEL] if gpu else []) + [CPU_MODEL]:
            if name not in names:
                names.append(name)
    return names


def clip_model(choices: list[str], startup=None) -> str | None:
    """The listed model that takes clips, offered to a visitor whose model takes images only:
    the deployment's clip model (``$PRUNESID_VIDEO_MODEL``), else the start-up model when it
    takes clips, else the offline Video-LLaVA built-in; None when none of them is listed."""
    known = [os.environ.get(VIDEO_MODEL_ENV, "").strip()]
    if getattr(startup, "takes_clips", False):
        known.append(startup.name)
    known.append(OFFLINE_VIDEO_MODEL)
    return next((name for name in known if name and name in choices), None)


def hub_reachable_at_launch(startup: ModelChoice | None = None) -> bool:
    """Whether the Hub models may be listed: never with HF_HUB_OFFLINE; else one bounded probe
    (none when the start-up choice already found the Hub unreachable)."""
    if startup is not None and startup.offline:
        return False
    return offline_reason() is None


def hosted() -> bool:
    """Whether this is a public deployment, where the host decides what is loaded."""
    flag = os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(os.environ.get(SERVE_ENV, "").strip()) or os.environ.get("SYSTEM", "").strip().lower() == "spaces"


def served_models(startup: str) -> list[str]:
    """The host's list under the hosted policy: ``$PRUNESID_SERVE`` (the start-up model first
    if it is not named), else the start-up model and the offline built-ins."""
    from prunesid.family_kit import builtin_models

    named = [name.strip() for name in os.environ.get(SERVE_ENV, "").split(",") if name.strip()]
    names = [startup] + (named or list(builtin_models()))
    return list(dict.fromkeys(names))


class ModelSlot:
    """The per-session choices and the loaded models (see the module docstring).

    ``load(name) -> Served`` loads a listed model; ``first`` is the model loaded at start-up.
    ``resident=True`` is the hosted policy: every listed model is loaded now and kept.
    """

    def __init__(self, first: Served, choices: list[str], load: Callable[[str], Served],
                 wait_s: float = SWITCH_WAIT_S, clock: Callable[[], float] = time.monotonic, free: Callable[[], None] | None = None,
                 resident: bool = False):
        if first.name not in choices:
            choices = [first.name] + list(choices)
        self.choices = list(choices)
        self.hosted = resident
        # The hosted policy: every listed model loaded once, here, and never unloaded.
        self._resident: dict[str, Served] = {first.name: first}
        if resident:
            for name in self.choices:
                if name not in self._resident:
                    self._resident[name] = load(name)
        self.default = first.name
        self.clip_model = clip_model(self.choices, first)  # the Video section's one-click switch (None: none listed)
        self._load = load
        self._wait_s = wait_s
        self._clock = clock
        self._free = free or _free_memory  # hands the unloaded model's memory back
        self._current: Served | None = first
        self._active = 0  # requests running on the loaded model
        self._switching = False
        self._cond = threading.Condition()
        self._sessions: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._switches: dict[str, deque] = {}
        self.loads = 0  # models loaded after start-up (tests read it)

    @classmethod
    def starting_with(cls, vlm, banner_text: str = "", max_new_tokens: int = 96, hub_reachable: bool = False) -> "ModelSlot":
        """A slot serving ``vlm`` first, the built-ins (and Hub models) listed beside it."""
        first = Served.of(vlm, banner_text or banner(vlm), max_new_tokens)
        return cls(first, picker_choices(vlm.name, hub_reachable), load=lambda name: load_listed(name, max_new_tokens))

    @classmethod
    def for_deployment(cls, first: Served, hub_reachable: bool, max_new_tokens: int = 96) -> "ModelSlot":
        """The app's slot: the hosted policy on a public deployment (:func:`hosted`), else
        the local one."""
        load = lambda name: load_listed(name, max_new_tokens)  # noqa: E731
        if hosted():
            return cls(first, served_models(first.name), load=load, resident=True)
        return cls(first, picker_choices(first.name, hub_reachable), load=load)

    @property
    def loaded(self) -> str | None:
        """The name of the model in memory now (local policy; the first model when hosted)."""
        if self.hosted:
            return self.default
        current = self._current
        return current.name if current is not None else None

    @property
    def resident(self) -> list[str]:
        """The models in memory now."""
        if self.hosted:
            return list(self._resident)
        return [self.loaded] if self.loaded is not None else []

    @property
    def first(self) -> Served:
        return self._current

    # --- choices ----------------------------------------------------------------------------

    def check(self, name) -> str:
        if not isinstance(name, str) or name not in self.choices:
            shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
            raise ValueError(f"model must be one of the listed models ({', '.join(self.choices)}), got {shown}")
        return name

    def chosen(self, session, client: str = "") -> str:
        """The model a session chose (the start-up model if it never chose)."""
        with self._cond:
            return self._sessions.get((session, client), self.default) if isinstance(session, str) else self.default

    def choose(self, session, client: str, name) -> Served:
        """Record ``session``'s choice and load that model (see the module docstring). Returns
        the loaded model's bundle (no lease is held)."""
        name = self.check(name)
        if not isinstance(session, str) or not session:
            raise ValueError("no session: reload the page")
        key = (session, client)
        with self._cond:
            previous = self._sessions.get(key, self.default)
            if name != previous and not self.hosted:  # hosted: a choice loads nothing, costs nothing
                self._count_switch(client)
            self._sessions[key] = name
            self._sessions.move_to_end(key)
            while len(self._sessions) > MAX_REMEMBERED_SESSIONS:
                self._sessions.popitem(last=False)
        try:
            with self.lease(name) as served:
                return served
        except ValueError:  # busy, or the model cannot be loaded: the session stays on what it had
            with self._cond:
                if self._sessions.get(key) == name:
                    self._sessions[key] = previous
            raise

    def forget(self, session, client: str = "") -> None:
        with self._cond:
            self._sessions.pop((session, client), None)

    def _count_switch(self, client: str) -> None:
        now = self._clock()
        recent = self._switches.setdefault(client, deque())
        while recent and now - recent[0] > MODEL_SWITCH_WINDOW_S:
            recent.popleft()
        if len(recent) >= MODEL_SWITCHES:
            raise ValueError(f"{MODEL_SWITCHES} model switches a minute is the most one visitor may make: wait a little")
        recent.append(now)
        if len(self._switches) > MAX_REMEMBERED_SESSIONS:
            self._switches = {key: value for key, value in self._switches.items() if value and now - value[-1] <= MODEL_SWITCH_WINDOW_S}

    # --- the one loaded model ---------------------------------------------------------------------

    @contextlib.contextmanager
    def lease(self, name: str):
        """The bundle of model ``name``, loaded if needed, held loaded until the block ends."""
        if self.hosted:  # every listed model is resident: nothing to load or wait for
            yield self._resident[self.check(name)]
            return
        deadline = self._clock() + self._wait_s
        with self._cond:
            while True:
                current = self._current
                if current is not None and current.name == name and not self._switching:
                    self._active += 1
                    break
                if not self._switching:
                    self._switch_to(name, deadline)
                    continue
                self._wait(deadline)
        try:
            yield current
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def _wait(self, deadline: float) -> None:
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ValueError(BUSY)
        self._cond.wait(min(remaining, 1.0))

    def _switch_to(self, name: str, deadline: float) -> None:
        """Called with the lock held and no switch under way: wait for the running requests,
        unload, load ``name`` (the previous model again if it cannot be loaded)."""
        self._switching = True
        try:
            while self._active:
                self._wait(deadline)
            previous = self._current
            previous_name = previous.name if previous is not None else self.default
            self._current = previous = None
            self._free()
            try:
                self._current = self._load(name)
                self.loads += 1
            except Exception as error:  # a broken download, no memory: say so, serve the previous model
                self._current = self._load(previous_name)
                raise ValueError(f"{name} could not be loaded ({_short(error)}); still serving {previous_name}") from error
        finally:
            self._switching = False
            self._cond.notify_all()

    # --- events ------------------------------------------------------------------------------

    def lease_for(self, request):
        """The lease of the model the request's session chose."""
        return self.lease(self.chosen(getattr(request, "session_hash", None), client_of(request)))

    def bind(self, pick: Callable[[Served], Callable], reference: Callable, check: Callable | None = None):
        """An event function with ``reference``'s parameters (and API) that runs
        ``pick(bundle)`` on the model its session chose. ``check(args)``, when given, runs
        first (e.g. the file policy, so that a refusal does not depend on the model)."""
        signature = inspect.signature(reference)
        try:
            hints = typing.get_type_hints(reference)
        except Exception:
            hints = {}
        slot = self

        if inspect.isgeneratorfunction(reference):

            def run(*args):
                *values, request = args
                if check is not None:
                    check(values)
                with slot.lease_for(request) as served:
                    yield from pick(served)(*values)
        else:

            def run(*args):
                *values, request = args
                if check is not None:
                    check(values)
                with slot.lease_for(request) as served:
                    return pick(served)(*values)

        # Gradio gives the request to the parameter annotated gr.Request (after the inputs).
        defaults = any(parameter.default is not inspect.Parameter.empty for parameter in signature.parameters.values())
        request_parameter = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request, default=None if defaults else inspect.Parameter.empty,
        )
        run.__signature__ = signature.replace(parameters=[*signature.parameters.values(), request_parameter])
        run.__annotations__ = {**hints, "request": gr.Request}
        run.__name__ = run.__qualname__ = getattr(reference, "__name__", "run")
        run.__doc__ = getattr(reference, "__doc__", None)
        return run


def unbound(method: Callable) -> Callable:
    """A handler class's method as a reference for :meth:`ModelSlot.bind` (its parameters
    without ``self``, its name), when no model of that kind is loaded yet."""
    reference = functools.partial(method, None)
    reference.__name__ = method.__name__
    reference.__doc__ = method.__doc__
    return reference


def load_listed(name: str, max_new_tokens: int) -> Served:
    """A listed model, loaded for the picker (a Hub model from the cache, or downloaded)."""
    vlm = load_chosen(ModelChoice(name, "picked on the page"))
    return Served.of(vlm, banner(vlm), max_new_tokens)


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass
    release_memory()


def _short(error) -> str:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return message if len(message) < 160 else message[:157] + "..."
