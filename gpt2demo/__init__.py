"""gpt2demo: watch GPT-2 write one token at a time."""

__version__ = "0.1.0"
