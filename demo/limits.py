"""What one visitor may cost the public demo: every limit of the app, in one place.

The media limits (pixels, aspect, frames, decoding) are the library's, in
prunesid/limits.py; they are repeated in :data:`MEDIA` so that this module lists them all.
docs/security.md explains each number and gives the time and memory it was measured to bound.
"""

from __future__ import annotations

from prunesid import limits as media

# --- the model queue (app.py, demo/admission.py) -------------------------------------------
CONCURRENCY_LIMIT = 2  # model calls at once, app-wide: every event that runs the model shares it
CONCURRENCY_ID = "model"  # Gradio's concurrency group of all those events
QUEUE_SIZE = 64  # requests waiting or running app-wide before a client is held to its fair part
QUEUE_HARD_SIZE = 192  # requests waiting or running app-wide, whoever sends them: the queue's own bound
CLIENT_SHARE = 6  # requests one client (address) may have waiting or running at once
DIRECT_LIMIT = 4  # page-only events outside the queue (send, snap, undo...) running at once, app-wide
BUSY_MESSAGE = (
    "busy: you already have {count} requests waiting or running (at most {share} at once); "
    "try again when one is done"
)
CROWDED_MESSAGE = (
    "busy: the demo is serving many visitors and you already have {count} requests waiting or "
    "running (your part of the queue now: {share}); try again when one is done"
)
FULL_MESSAGE = "the demo is serving too many visitors right now: try again in a minute"

# --- request bodies and uploads (demo/admission.py) ------------------------------------------
BODY_BYTES = 2 * 1024 * 1024  # any request but an upload (the API chat's history is <= 100 000 characters)
UPLOADS_AT_ONCE = 2  # uploads one client may have in progress
UPLOAD_BYTES_PER_CLIENT = 256 * 1024 * 1024  # bytes one client may upload ...
UPLOAD_WINDOW_S = 600.0  # ... in this many seconds
UPLOAD_BYTES_APP = 2 * 1024 * 1024 * 1024  # bytes all clients together may upload in that window
UPLOAD_KEEP_S = 1800  # uploads and outputs older than this are deleted (checked every 5 minutes)
CLIENT_RECORDS = 4096  # addresses whose upload history is remembered; the oldest is forgotten first

# --- Gradio's session state (demo/admission.py) -----------------------------------------------
STATE_SESSIONS_PER_CLIENT = 16  # browser sessions one address may hold state for; its oldest goes first
STATE_SESSIONS = 1024  # all addresses; past it the address holding most loses its oldest

# --- the model picker (demo/models.py) -------------------------------------------------------
MODEL_SWITCHES = 12  # model switches one client (address) may make ...
MODEL_SWITCH_WINDOW_S = 60.0  # ... in this many seconds: a load is the dearest thing a request causes
SWITCH_WAIT_S = 120.0  # a request waits at most this long for a switch (or the requests it waits for)

# --- uploads (demo/files.py, demo/video.py) ------------------------------------------------
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # per file; a 200 MP phone JPEG is 30-60 MB (more limits under "request bodies")

# --- the controls: the sliders' ranges, checked on every request ---------------------------
BUDGET_RANGE = (8, 576)  # N, tokens per image (per view on LLaVA-NeXT)
FRAME_BUDGET_RANGE = (2, 256)  # N per video frame
GROUPS_RANGE = (0, 144)  # K, 0 = auto
LAM_RANGE = (0.0, 18.0)  # lambda, 0 = auto
PIXEL_RANGE = (0, 65_535)  # a clicked position on an overlay

# --- the chat (demo/chat.py, demo/handlers.py) ---------------------------------------------
MAX_SESSIONS = 256  # open chat sessions; when full, an idle one or the oldest of the address holding most makes room
SESSIONS_PER_CLIENT = 8  # open chat sessions per client address
SESSION_IDLE_S = 1800.0  # a session without a question for this long may be closed
MAX_PENDING = 8  # questions waiting at once in one session
QUESTIONS_PER_WINDOW = 30  # questions one session may send ...
QUESTION_WINDOW_S = 600.0  # ... in this many seconds
MAX_TURNS = 200  # messages per conversation
MAX_QUESTION_CHARS = 2000
MAX_HISTORY_CHARS = 100_000  # all the text of a chat history sent to the stateless API chat

MEDIA = {
    "MIN_SIDE": media.MIN_SIDE,
    "MAX_ASPECT": media.MAX_ASPECT,
    "DECODED_PIXELS": media.DECODED_PIXELS,
    "MAX_FRAME_PIXELS": media.MAX_FRAME_PIXELS,
    "MAX_CLIP_FRAMES": media.MAX_CLIP_FRAMES,
    "MAX_DURATION_S": media.MAX_DURATION_S,
    "MAX_DECODED_FRAMES": media.MAX_DECODED_FRAMES,
    "DECODE_SECONDS": media.DECODE_SECONDS,
    "FRAME_LONG_SIDE": media.FRAME_LONG_SIDE,
}
