"""The teaching views' look: their CSS, the click script, and the HTML component that carries both."""

from __future__ import annotations

import gradio as gr

# Clicking a box or a candidate row sends its data-index to the component's .select event.
CLICK_JS = """
element.addEventListener('click', (event) => {
  const item = event.target.closest('[data-index]');
  if (item) trigger('select', {index: Number(item.dataset.index), value: item.dataset.value || ''});
});
"""

# Sizes in em, so projector mode's larger text gives larger boxes; colours through variables,
# so dark mode (Gradio's "dark" class on <body>) can swap the few fixed ones. Declarations
# outside a rule style the component's root (Gradio nests the template under its id).
CSS = """
overflow-x: auto;  /* a wide table scrolls inside its box at a phone's width, not the page */
--tv-you: #7c3aed;
--tv-warn: #dc2626;
--tv-repeat: rgba(250, 204, 21, 0.55);
--tv-bar: #3b82f6;
--tv-bar-cut: #9ca3af;
.dark & { --tv-you: #a78bfa; --tv-warn: #f87171; --tv-repeat: rgba(250, 204, 21, 0.35); --tv-bar: #60a5fa;
  --tv-bar-cut: #6b7280; }
.tv-text { line-height: 2.1; font-size: 1.05em; }
.tv-prompt { color: var(--body-text-color-subdued, #888); white-space: pre-wrap; }
.tv-box { display: inline-block; white-space: pre;
  border: var(--tv-border-width, 1px) solid var(--border-color-primary, #ccc); border-radius: 0.25em;
  padding: 0 0.2em; margin: 1px 1px; line-height: 1.5; }
.tv-clickable .tv-box, .tv-clickable tr[data-index] { cursor: pointer; }
.tv-box.tv-bytes { font-family: var(--font-mono, monospace); font-size: 0.8em; }
.tv-box.tv-selected { outline: 2px solid #f97316; outline-offset: 1px; }
.tv-box.tv-you { border: 2px dashed var(--tv-you); }
.tv-box.tv-repeat { background: var(--tv-repeat); }
.tv-box.tv-diverge { border-left: 4px solid var(--tv-warn); }
.tv-box.tv-eos { font-style: italic; }
.tv-group { display: inline-block; border: 1px dotted var(--body-text-color-subdued, #888); border-radius: 0.4em;
  padding: 0 0.15em; margin: 0 0.15em; }
.tv-formed { font-weight: bold; margin: 0 0.2em; }
.tv-candidates { border-collapse: collapse; width: 100%; }
.tv-candidates td, .tv-candidates th { padding: 0.15em 0.4em; text-align: left; }
.tv-candidates tr.tv-cut td { color: var(--body-text-color-subdued, #999); }
.tv-candidates tr.tv-chosen td { font-weight: bold; }
.tv-candidates tr.tv-cutoff td { border-top: 2px dashed var(--tv-warn); color: var(--tv-warn); font-size: 0.85em; }
.tv-bar { display: inline-block; height: 0.8em; background: var(--tv-bar); vertical-align: middle; }
.tv-cut .tv-bar { background: var(--tv-bar-cut); }
.tv-note { color: var(--body-text-color-subdued, #666); font-size: 0.9em; }
.tv-lane { margin-bottom: 0.8em; }
.tv-lane h4 { margin: 0.2em 0; }
.tk-groups { display: flex; flex-wrap: wrap; gap: 0.4em; align-items: flex-start; }
.tk-group { border: var(--tv-border-width, 1px) solid var(--border-color-primary, #ccc); border-radius: 0.4em;
  padding: 0.15em 0.3em; text-align: center; }
.tk-group.tk-split { border: 2px solid #f97316; }
.tk-chars { font-size: 1.4em; white-space: pre; }
.tk-tokens { display: flex; gap: 0.2em; justify-content: center; }
.tk-token { display: flex; flex-direction: column; align-items: center; font-size: 0.8em; }
.tk-token small { font-family: var(--font-mono, monospace); color: var(--body-text-color-subdued, #666); }
.tk-ids { font-family: var(--font-mono, monospace); white-space: pre-wrap; word-break: break-all; }
"""


def teaching_html(elem_id: str, clickable: bool = False, **kwargs) -> gr.HTML:
    """An HTML output with the views' styles; clickable ones report their boxes' data-index to .select."""
    return gr.HTML(elem_id=elem_id, css_template=CSS, js_on_load=CLICK_JS if clickable else None,
                   elem_classes=["tv-clickable"] if clickable else None, **kwargs)
