"""Each tab's logic: what it shows of the engine's facts, and the handlers its events call.

Plain functions and classes that tests import; gpt2demo/ui/tabs/ lays them out and wires them.
"""
