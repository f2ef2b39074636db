"""The Gradio page: it talks to the model only through the engine interface (gpt2demo/serving).

Layout:
  i18n/       every label and message in English and Chinese, and errors in words
  widgets/    what several tabs draw: token boxes, candidate table, chart, controls, styles
  views/      each tab's logic: its view of the engine's steps and its event handlers
  tabs/       each tab's layout and wiring
  runs.py     the one Stop mechanism: which runs belong to which browser tab
  pacing.py   how often a streaming page is updated
  panel.py    the model panel, banners, the classroom line
  context.py  what every tab's handlers share (engine, runs, exposure)
  page.py     gr.Blocks: the header, the tabs, the page-wide events
  server.py   launch: queue, password, share link with a local fallback, safe settings
"""

import os

# No calls home from a classroom machine; gradio reads this when it would send analytics.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
