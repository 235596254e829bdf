"""The commented starter storyboard that `storyboard new NAME` writes."""

from __future__ import annotations

_TEMPLATE = """\
# yaml-language-server: $schema={schema}
# A storyboard: one scene = one Kling task = one clip; scenes play in file order.
# Check it with `storyboard validate`, see payloads and prices with `storyboard compile`.
storyboard: 1
title: {title}
model: kling-v3-omni        # or kling-video-o1 (no multi-shot, no audio, no 4k)
mode: std                   # std (720p) | pro (1080p) | 4k
aspect_ratio: "16:9"        # 16:9 | 9:16 | 1:1 (quote it)
sound: off                  # on | off
budget_usd: 2.00            # render refuses a plan that costs more

vars:                       # plain values for prompts: {{{{ hero }}}}
  hero: a young cartographer with ink-stained hands

# refs:                     # media the prompts can name
#   images:
#     map: assets/map.png   # local jpg/png next to this file (>= 300 px a side)
#     sky: {{url: "https://example.com/sky.jpg"}}
#     pier:                 # or an image Kling makes once (about $0.03), then used alike
#       generate: "A foggy pier at dawn, wide shot, soft light."
#   elements:
#     cartographer: 829301938475      # an id from your Kling element library
#   videos:
#     harbour: {{url: "https://example.com/harbour.mp4", duration: 6}}

# voices:                   # who speaks: narration and elements (README "Sound")
#   narrator: {{preset: oversea_male1, language: en}}   # a Kling preset voice
# narrator: narrator        # the voice of every scene's `narration:`
# soundtrack:               # music under the film, ducked under speech
#   music: assets/score.mp3
#   loudness: -14           # the film's loudness (LUFS); true peak <= -1 dBTP

scenes:
  - id: arrival             # names the clip: renders/{name}/arrival.mp4
    prompt: >-
      Wide shot at dawn: {{{{ hero }}}} steps off a ferry onto a foggy pier,
      slow dolly in, soft morning light.
    duration: 5
    # first_frame: map      # start from an image (a ref under refs.images)
    # narration: "She had never seen the sea."   # spoken over the scene (TTS)
    # sfx: "gulls, a ferry horn, waves on the pier"  # a sound effect under it

  - id: workshop
    shots:                  # multi-shot: one task, 1-6 shots, durations add up
                            # (or `shots: auto` with a prompt and a duration: Kling cuts)
      - prompt: "Close-up: {{{{ hero }}}} unrolls an old map on a wooden table."
        duration: 3
      - prompt: "Over the shoulder: a finger traces a coastline on the map."
        duration: 3
"""


def starter_text(name: str, schema_ref: str) -> str:
    title = name.replace("-", " ").replace("_", " ").title()
    return _TEMPLATE.format(name=name, title=title, schema=schema_ref)
