"""The Download and Load buttons of a run: files made and read in the browser.

The server takes no uploads and serves no files of its own (ui/guards.py), so:
- Download: a private event puts {"name", "type", "text"} (JSON) into a hidden box;
  then a script in the page turns it into a file with a Blob and an <a download>;
- Load: a script opens the browser's file chooser, reads the chosen file and sends
  its text as an ordinary event input, with its size as sent, so the server can
  refuse a file too large in words instead of the guard's bare 413.
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from gpt2demo.ui.i18n import label

# Queued (Gradio 6.31 shows no gr.Error of an event outside the queue): a refused file must say why.
FILE_CONCURRENCY = 4  # file events of all tabs at once; each is a few milliseconds of JSON
FILE_EVENTS = "run-files"

# The link is removed at once; the Blob's URL lives a minute more, since some browsers
# start reading it only after the click returned.
DOWNLOAD_JS = """
(payload) => {
  if (!payload) return;
  const file = JSON.parse(payload);
  const url = URL.createObjectURL(new Blob([file.text], {type: file.type + ';charset=utf-8'}));
  const link = document.createElement('a');
  link.href = url;
  link.download = file.name;
  link.style.display = 'none';
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
"""

# Returns [text, size] for the load event's two hidden inputs: ('', 0) when no file was chosen,
# ('', size) for a file too large to send. Chrome, Firefox and Safari report a closed chooser as 'cancel'.
LOAD_JS = """
async () => {
  const file = await new Promise((resolve) => {
    const input = document.createElement('input');
    input.type = 'file';
    input.accept = '.json,application/json';
    input.style.display = 'none';
    input.addEventListener('change', () => { input.remove(); resolve(input.files[0] || null); });
    input.addEventListener('cancel', () => { input.remove(); resolve(null); });
    document.body.appendChild(input);
    input.click();
  });
  if (!file) return ['', 0];
  const text = await file.text();
  const size = new TextEncoder().encode(JSON.stringify(text)).length;
  return size > %(limit)d ? ['', size] : [text, size];
}
"""


@dataclass
class DownloadButtons:
    """A tab's two Download buttons and the hidden box their files pass through."""

    json_button: gr.Button
    html_button: gr.Button
    payload: gr.Textbox


def download_buttons(prefix: str) -> DownloadButtons:
    """The buttons, laid out where they are called (in a gr.Row); element ids '<prefix>-download-json', ..."""
    json_button = gr.Button(label("views_download_json"), size="sm", elem_id=f"{prefix}-download-json")
    html_button = gr.Button(label("views_download_html"), size="sm", elem_id=f"{prefix}-download-html")
    payload = gr.Textbox(visible=False, elem_id=f"{prefix}-download")
    return DownloadButtons(json_button, html_button, payload)


def wire_downloads(buttons: DownloadButtons, json_file, html_file) -> None:
    """Each button's handler fills the hidden box; once it succeeded, the page saves its file."""
    for button, handler in ((buttons.json_button, json_file), (buttons.html_button, html_file)):
        made = button.click(handler, None, [buttons.payload], concurrency_limit=FILE_CONCURRENCY,
                            concurrency_id=FILE_EVENTS, api_visibility="private", show_progress="hidden")
        made.success(None, [buttons.payload], None, js=DOWNLOAD_JS, queue=False, api_visibility="private",
                     show_progress="hidden")


@dataclass
class LoadButton:
    """The Load button and the two hidden inputs its script fills: the file's text, its size as sent."""

    button: gr.Button
    text: gr.Textbox
    size: gr.Number


def load_button(prefix: str) -> LoadButton:
    button = gr.Button(label("views_load_run"), size="sm", elem_id=f"{prefix}-load-run")
    return LoadButton(button, gr.Textbox(visible=False, elem_id=f"{prefix}-load-text"),
                      gr.Number(visible=False, elem_id=f"{prefix}-load-size"))


def wire_load(load: LoadButton, handler, outputs: list, limit_bytes: int) -> None:
    """The button opens the file chooser; handler(text, size, request) gets the file's text."""
    # preprocess=False: the handler checks the raw values itself (a hand-made request sends anything).
    load.button.click(handler, [load.text, load.size], outputs, js=LOAD_JS % {"limit": limit_bytes}, preprocess=False,
                      concurrency_limit=FILE_CONCURRENCY, concurrency_id=FILE_EVENTS, trigger_mode="multiple",
                      api_visibility="private", show_progress="hidden")
