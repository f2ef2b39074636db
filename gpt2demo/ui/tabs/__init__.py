"""One module per tab: layout and wiring only (the logic is in gpt2demo/ui/views/).

Each build(ctx) puts its tab inside the page's gr.Tabs and returns its prompt box,
so the page can share one prompt across tabs. A new tab is a module here, one in
views/, and one line in page.py.
"""
