"""Serving: the engine interface (interface.py) and its implementations.

  interface.py       Request, Step, Ticket and the Engine every caller uses
  tickets.py         a request's stream, the same for every engine
  scheduler.py       continuous batching on the engine's one thread
  cost_race.py       the cost lesson's two methods, run by the scheduler between steps
  local.py           LocalEngine: model + scheduler in this process
  process.py         ProcessEngine: a LocalEngine in its own process (what app.py runs)
  engine_process.py  that process's main
  remote.py          RemoteEngine: generation on a vLLM server (app.py --engine URL), with
                     openai_wire.py (the API's format), served_model.py (its tokenizer, here) and
                     remote_generation.py (one request's steps)
"""


def start_engine(spec: str | None, device: str | None, max_batch: int, queue_size: int, precision: str = "float32",
                 in_process: bool = False, engine_url: str | None = None):
    """The engine app.py serves with: a remote server's front end, else its own process where the OS allows it, else this one.

    Args:
        spec: the model (local engines: "gpt2" when None); with engine_url, the served model's name
            or its tokenizer's folder (None: the server's only model).
        engine_url: an OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1.
    """
    if engine_url:
        from gpt2demo.serving.remote import RemoteEngine

        return RemoteEngine(engine_url, spec, max_requests=max_batch + queue_size).start()
    spec = spec or "gpt2"
    from gpt2demo.serving import process

    if process.available and not in_process:
        return process.ProcessEngine(spec, device, max_batch, queue_size, precision)
    from gpt2demo.serving.local import LocalEngine

    return LocalEngine(spec, device, max_batch, queue_size, precision).start()
