"""Engine-side logic behind the teaching views: what the page needs beyond the plain Steps.

- pieces.py: byte-level tokens and the characters they form (tokenizer view, token view);
- stepmode.py: "you are the sampler", one token at a time with undo and branches;
- lanes.py: the same prompt and seed under four strategies in one DecodeBatch;
- cost.py: the tutorial's full re-run against the KV cache, timed step by step.

The views call these functions and render what they return; none of them draws anything.
"""
