"""The Gradio page: one module per view; handlers call the engine, never the model directly.

Layout:
  i18n.py          every label and message in English and Chinese
  service.py       the one model and Scheduler every visitor shares, loaded in the background
  runs.py          which generation belongs to which browser tab, so Stop and a closed tab reach it
  live_output.py   steps -> the text, the prompt-in-grey HTML and the status line
  handlers.py      the functions the page's events call (tests call them directly)
  generate_tab.py  the Generate tab: prompt, controls, output
  model_panel.py   which model runs where, banners (offline model, public link)
  classroom.py     requests running / waiting
  page.py          gr.Blocks: puts the views together and wires events; a new tab is one module + one line
  server.py        launch: queue sizes, auth, share link with a local fallback
"""

import os

# No calls home from a classroom machine; gradio reads this when it would send analytics.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
