"""Emulate the Kling Omni-Video API offline. HTTP requests → Kling-shaped JSON, MP4 clips, PNGs.

The emulator is a Starlette app that keeps the contract of kling-api.md: auth (§1.2, §1.3),
its own reading of the body rules R1-R16 as Kling's 2026 change log amends them (§3, §11:
a bad body is HTTP 400, code 1201 with a message naming the field), unique
`external_task_id`, the account's concurrency cap (1303), the task timeline submitted →
processing → succeed | failed on an injected clock, and real MP4 placeholder clips of the
paid length and aspect, encoded lazily on first download.

It also keeps an element registry (§7.1, `/v1/general/advanced-custom-elements`): element
creates are checked (1201), take `element_latency` seconds on the same clock, hold no
video concurrency slot, and end with an integer `element_id` that video creates accept in
`element_list` (as they accept any positive id from the user's own library).

And Omni-Image (§11.1, `/v1/images/omni-image`): image creates are checked (1201), take
`image_latency` seconds, hold one slot per image of `image_concurrency` (1303 above it,
apart from the video slots), bill 8 image units an image (16 at 4K), and end with
placeholder PNGs of the asked resolution and aspect that show the prompt and the
references sent as Base64. `stats()` counts them as `image_creates` and `images`.

And sound (§11.2): a dozen preset voices (`/v1/general/presets-voices`), custom voices
made by a task on the clock (`/v1/general/custom-voices`, `voice_latency`; deleted with
`/v1/general/delete-voices`), TTS (`/v1/audio/tts`: answered at once with a tone whose
length follows the text) and sound effects (`/v1/audio/text-to-audio`: a task of
`sfx_latency` seconds ending in noise of the asked length), MP3 and WAV served by the
emulator; element creates may bind a voice (`element_voice_id`). `stats()` counts them
as `voice_creates`/`voices`, `tts_calls`, `sfx_calls`/`sfx`.

It reads the rules independently of `compiler.rules` on purpose: it exists to catch the
compiler's bugs. For the same reason the package imports nothing from the rest of the
compiler (tests/test_emulator_imports.py holds it to that): it knows Kling, not
storyboards, and shows an `external_task_id` as it was sent.

Use it in-process::

    emulator = Emulator(latency=2.0, clock=fake_clock, sleep=fake_sleep)
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://emulator") as c:
        ...

or as a server with `serve(host, port, emulator)`. Faults are injected through
`emulator.faults` (or `POST /_emulator/faults`) for the client's and executor's tests.

The modules, one concern each: `app` (the Emulator: routes, auth, admission, timeline,
stats), `rules` (video, element, image and sound bodies), `faults`, `elements` (the
registry's state and views), `images` (Omni-Image tasks' state and views), `voices`
(presets and custom voices), `sounds` (TTS calls and sound-effect tasks), `timeline`
(element, image, voice and effect task statuses), `clips` (placeholder MP4s and PNG
stills), `audio` (tones, noise, MP3 and WAV) and `transport` (in-process and uvicorn).
"""

from __future__ import annotations

from .app import Emulator
from .faults import Fault, FaultPlan
from .transport import ConnectionDropped, serve

__all__ = ["ConnectionDropped", "Emulator", "Fault", "FaultPlan", "serve"]
