"""How the page displays: projector mode and dark mode (two switches in the header), narrow screens.

Both modes are classes on <body>. Gradio itself puts "dark" there, from ?__theme=dark|light or,
without it, from the browser's prefers-color-scheme; "projector" is ours, from ?projector=1.
The switches run in the browser only (no server call) and rewrite the address with
history.replaceState, so a teacher's bookmark opens the page the way it was left.
"""

from __future__ import annotations

import json

import gradio as gr

from gpt2demo.ui.i18n import label

PROJECTOR_CLASS = "projector"  # on <body>, next to Gradio's "dark"
PROJECTOR_PARAMETER = "projector"  # ?projector=1
THEME_PARAMETER = "__theme"  # Gradio's own: ?__theme=dark or ?__theme=light
PROJECTOR_SCALE = 1.5  # every text size of the theme, for the back of a classroom
STYLE_ID = "gpt2demo-display-style"  # the <style> element the load script adds once

# High contrast: near-black on white, near-white on black. The subdued colour (the prompt's
# grey, hints) stays apart from the body text, but far above Gradio's #9ca3af on white (2.5:1).
CONTRAST = {
    "light": {
        "body_text_color": "#000000",
        "body_text_color_subdued": "#404040",  # 10:1 on white
        "block_label_text_color": "#000000",
        "block_title_text_color": "#000000",
        "input_placeholder_color": "#525252",
        "border_color_primary": "#404040",
        "background_fill_primary": "#ffffff",
        "block_background_fill": "#ffffff",
        "input_background_fill": "#ffffff",
    },
    "dark": {
        "body_text_color": "#ffffff",
        "body_text_color_subdued": "#d4d4d4",  # 14:1 on black
        "block_label_text_color": "#ffffff",
        "block_title_text_color": "#ffffff",
        "input_placeholder_color": "#a3a3a3",
        "border_color_primary": "#d4d4d4",
        "background_fill_primary": "#000000",
        "block_background_fill": "#0a0a0a",
        "input_background_fill": "#000000",
    },
}
# At any width, and a phone's above all: a run of letters with no space (GPT-2 writes them)
# breaks inside the text's box instead of running out of it.
WRAP_CSS = "#output .gpt2demo-output { overflow-wrap: anywhere; }"
# The views' own knobs (widgets/styles.py reads them with these defaults off projector mode).
PROJECTOR_VIEW_VARIABLES = {"--tv-border-width": "2px"}


def css_name(theme_name: str) -> str:
    """'body_text_color' -> '--body-text-color', as Gradio names a theme setting in CSS."""
    return "--" + theme_name.replace("_", "-")


def css_value(theme_value: str) -> str:
    """A theme value in CSS: '*text_md' (another setting) -> 'var(--text-md)'."""
    return f"var({css_name(theme_value[1:])})" if theme_value.startswith("*") else theme_value


def mode_value(settings: dict, name: str, dark: bool):
    """A theme setting in light or dark mode (a dark value of None means: as in light mode)."""
    dark_value = settings.get(f"{name}_dark") if dark else None
    return settings[name] if dark_value is None else dark_value


def referring(settings: dict, changed: set[str], dark: bool) -> set[str]:
    """Every setting that refers, at any depth, to one of `changed` in that mode.

    A CSS variable's var() is resolved where it is declared (Gradio declares its on :root), so
    one that refers to a changed setting has to be declared again next to it to follow.
    """
    names = [name for name in settings if not name.endswith("_dark")]
    reached = set(changed)
    while True:
        new = set()
        for name in names:
            value = mode_value(settings, name, dark)
            if name not in reached and isinstance(value, str) and value.startswith("*") and value[1:] in reached:
                new.add(name)
        if not new:
            return reached - changed
        reached |= new


def declarations(values: dict[str, str]) -> str:
    return " ".join(f"{css_name(name)}: {css_value(value)};" for name, value in values.items())


def projector_css(theme: gr.themes.Base) -> str:
    """The page's CSS for body.projector: larger text sizes and high-contrast colours, light and dark."""
    settings = theme.to_dict()["theme"]
    sizes = {name: f"{float(settings[name].removesuffix('px')) * PROJECTOR_SCALE:g}px"
             for name in settings if name.startswith("text_") and settings[name].endswith("px")}
    changed = set(sizes) | set(CONTRAST["light"]) | set(CONTRAST["dark"])
    # One list for both modes: the light rule also applies in dark mode, so the dark rule has to
    # declare every variable the light one does, or the light value would win there.
    followers = sorted(referring(settings, changed, False) | referring(settings, changed, True))
    views = " ".join(f"{name}: {value};" for name, value in PROJECTOR_VIEW_VARIABLES.items())
    rules = []
    for mode, selector in (("light", f"body.{PROJECTOR_CLASS}"), ("dark", f"body.{PROJECTOR_CLASS}.dark")):
        values = {**sizes, **CONTRAST[mode]}
        values.update({name: mode_value(settings, name, mode == "dark") for name in followers})
        # :root in front: Gradio declares its dark settings under ":root .dark", which a bare
        # body.projector would lose to.
        rules.append(f":root {selector} {{ {declarations(values)} {views} }}")
    return "\n".join(rules)


def page_css(theme: gr.themes.Base) -> str:
    """Everything the load script adds to the page."""
    return WRAP_CSS + "\n" + projector_css(theme)


def load_js(css: str) -> str:
    """The page-load script: add the CSS once, apply ?projector=1, report both switches' states."""
    return f"""() => {{
  if (!document.getElementById({json.dumps(STYLE_ID)})) {{
    const style = document.createElement('style');
    style.id = {json.dumps(STYLE_ID)};
    style.textContent = {json.dumps(css)};
    document.head.appendChild(style);
  }}
  const address = new URL(window.location.href);
  const projector = address.searchParams.get({json.dumps(PROJECTOR_PARAMETER)}) === '1';
  document.body.classList.toggle({json.dumps(PROJECTOR_CLASS)}, projector);
  // Gradio has already chosen light or dark (from ?__theme= or the browser): show its choice.
  return [projector, document.body.classList.contains('dark')];
}}"""


def remember(parameter: str, value: str | None) -> str:
    """JS that puts ?parameter=value into the address (None takes it out), without reloading."""
    name = json.dumps(parameter)
    change = f"delete({name})" if value is None else f"set({name}, {json.dumps(value)})"
    return (f"const address = new URL(window.location.href); address.searchParams.{change}; "
            "history.replaceState(history.state, '', address);")


PROJECTOR_JS = f"""(on) => {{
  document.body.classList.toggle({json.dumps(PROJECTOR_CLASS)}, on);
  if (on) {{ {remember(PROJECTOR_PARAMETER, "1")} }} else {{ {remember(PROJECTOR_PARAMETER, None)} }}
}}"""

# As Gradio's own ?__theme= does: the "dark" class on <body>. "light" (not no parameter) so
# that a bookmark made in light mode stays light in a browser that prefers dark.
DARK_JS = f"""(on) => {{
  document.body.classList.toggle('dark', on);
  if (on) {{ {remember(THEME_PARAMETER, "dark")} }} else {{ {remember(THEME_PARAMETER, "light")} }}
}}"""


def build_switches(demo: gr.Blocks) -> tuple[gr.Checkbox, gr.Checkbox]:
    """The projector and dark switches, in a row of the header; they follow the address when the page opens."""
    with gr.Row(elem_id="display-switches"):
        projector = gr.Checkbox(False, label=label("projector_mode"), container=False, scale=0, min_width=0,
                                elem_id="projector-switch")
        dark = gr.Checkbox(False, label=label("dark_mode"), container=False, scale=0, min_width=0,
                           elem_id="dark-switch")
    # .input only: a switch set by the load script must not write its state into the address
    # (that would pin "dark" for a page that merely follows the browser).
    projector.input(None, [projector], None, js=PROJECTOR_JS, queue=False, api_visibility="private",
                    show_progress="hidden")
    dark.input(None, [dark], None, js=DARK_JS, queue=False, api_visibility="private", show_progress="hidden")
    # The theme launch() uses: server.py names none, so Gradio's Default.
    demo.load(None, None, [projector, dark], js=load_js(page_css(gr.themes.Default())), queue=False,
              api_visibility="private", show_progress="hidden")
    return projector, dark
