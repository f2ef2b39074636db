"""Stream a continuation from a running gpt2demo with gradio_client.

    python app.py &                                   # serves http://127.0.0.1:7860/
    python examples/client_example.py http://127.0.0.1:7860/
"""

import sys

from gradio_client import Client

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7860/"
client = Client(url, verbose=False)
job = client.submit(
    prompt="Yesterday, a man named Jack said he saw an alien,",
    max_new_tokens=40,
    top_k=10,  # the other parameters: temperature, top_p, repetition_penalty, seed ("" = random), greedy
    api_name="/generate",
)
printed = 0
for text, _html, _status, _seed in job:  # a partial result per token (a few at a time when the class is busy); first output: the text so far
    print(text[printed:], end="", flush=True)
    printed = len(text)
text, _html, status, seed = job.outputs()[-1]
print(text[printed:])
print(f"[{status}]")
print(f"The same text again: seed={seed!r} with the same settings.")
