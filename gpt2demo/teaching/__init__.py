"""What the teaching tabs need beyond plain Steps, on the engine interface (no tensors here).

- lanes.py: the same prompt and seed under four strategies, four requests in the shared batch;
- sampler.py: "you are the sampler", one token at a time with undo and branches;
- cost.py: the cost race's milestones and speeds (the race itself runs on the engine's thread).

The views call these and render what they return; none of them draws anything.
"""
