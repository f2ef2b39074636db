"""RemoteEngine: generation on an OpenAI-compatible server (vLLM), seen through the engine interface.

`python app.py --engine http://HOST:8000/v1` serves the same page with the model's
math on another machine: vLLM's engine core owns the model and this process is
one of its front ends. Every request is one streamed /v1/completions call of its
own, so Strategies' four lanes are four concurrent requests, a person's Stop or a
closed tab closes that call's connection (vLLM aborts the request at once), and
one broken connection fails only its own student's stream.

At start: GET /v1/models names the served model (unless --model does) and its
window; the tokenizer is the same model's, loaded here (served_model.py) and
checked against the server's /tokenize; a one-token probe asks for top-k = 1
logprobs, which in --logprobs-mode processed_logprobs come back as 0.0 for the
survivor and -9999 for the rest: only then does the engine offer "candidates".
It never offers "race": the cost race times this machine's own KV cache.

Nothing waits forever: a connection must open within CONNECT_SECONDS and a server
that is streaming must send something every read_seconds, else the request ends
with EngineUnavailable. All I/O runs on one asyncio loop in a thread of its own
("gpt2demo-remote"); callers only touch Tickets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx

from gpt2demo.errors import DemoError, EngineBusy, EngineUnavailable, GenerationFailed
from gpt2demo.serving.interface import DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE
from gpt2demo.serving.interface import Engine, EngineState, EngineStats, PromptFit, Request, Tokens
from gpt2demo.serving.openai_wire import CUT_BELOW, choice_tokens, completion_body, parse_event, server_error, sse_data
from gpt2demo.serving.remote_generation import RemoteGeneration
from gpt2demo.serving.served_model import ServedModel, find_tokenizer, load_tokenizer
from gpt2demo.serving.tickets import Ticket
from gpt2demo.settings import BOUNDS, SamplingSettings, check_integer, check_prompt
from gpt2demo.sources import log

CONNECT_SECONDS = 5.0  # a server that is up accepts a connection at once; longer means it is not there
READ_SECONDS = 60.0  # the longest silence inside a stream (a queued request waits in vLLM before its first token)
CLOSE_SECONDS = 10.0  # for open streams to end when the engine closes
DETAIL_CHARS = 160  # of a library's error, kept for the page
TOKENIZER_CHECK = "Yesterday, a man named Jack said he saw an alien, 你好"  # tokenized here and by the server: must agree
PROCESSED = "candidates"  # the feature a processed-logprobs server gives the views


def api_base(url: str) -> str:
    """The OpenAI API's base: 'http://h:8000' and 'http://h:8000/v1/' both become 'http://h:8000/v1'."""
    url = url.strip().rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def served_entry(listing, wanted: str | None, url: str) -> dict:
    """The /v1/models entry to use: the one --model names (by name or by its folder), else the only one."""
    models = [m for m in (listing.get("data") if isinstance(listing, dict) else None) or [] if isinstance(m, dict) and "id" in m]
    if not models:
        raise EngineUnavailable("engine_protocol", detail=f"GET {url}/models listed no model")
    names = ", ".join(str(m["id"]) for m in models)
    if wanted:
        folder = Path(wanted).expanduser()
        for model in models:
            if model["id"] == wanted or (folder.is_dir() and Path(str(model.get("root", ""))).expanduser() == folder.resolve()):
                return model
    if len(models) == 1:
        return models[0]  # --model then names only where the tokenizer comes from
    if wanted:
        raise EngineUnavailable("model_not_served", url=url, model=wanted, served=names)
    raise EngineUnavailable("choose_model", url=url, served=names)


def tokenizer_spec(model: dict) -> str:
    """Where to find the served model's tokenizer without --model: its folder, when this machine has it, else the hub."""
    for name in (model.get("root"), model.get("id")):
        if name and Path(str(name)).expanduser().is_dir():
            return str(name)
    name = str(model.get("root") or model["id"])
    return name if name in ("gpt2", "bundled") or ":" in name else f"hf:{name}"


def is_processed(top: tuple[tuple[int, float], ...]) -> bool:
    """A top-k = 1 probe's logprobs: the survivor at 0.0 (renormalised) and every other token cut (-9999)."""
    return len(top) > 1 and abs(top[0][1]) < 1e-3 and all(logprob <= CUT_BELOW for _, logprob in top[1:])


class RemoteEngine(Engine):
    """A front end of one OpenAI-compatible server; see the module docstring."""

    def __init__(self, url: str, spec: str | None = None, max_requests: int = DEFAULT_MAX_BATCH + DEFAULT_QUEUE_SIZE,
                 read_seconds: float = READ_SECONDS, connect_seconds: float = CONNECT_SECONDS) -> None:
        """
        Args:
            url: the server's OpenAI API, e.g. http://127.0.0.1:8000/v1.
            spec: the served model's name, or where its tokenizer is (folder, modelscope:ID, hf:ID);
                None: the server's only model, its tokenizer from the folder the server names.
            max_requests: streams this front end keeps open at once; more are refused as busy.
        """
        self.url, self.spec, self.max_requests = api_base(url), spec, max_requests
        self.root = self.url.removesuffix("/v1")  # vLLM's own routes: /tokenize, /version, /health
        self.read_seconds, self.connect_seconds = read_seconds, connect_seconds
        self.model: ServedModel | None = None
        self.features: frozenset[str] = frozenset()
        self._state = EngineState("loading", spec or "remote", "remote")  # the panel: "loading remote …", never a URL's tail
        self._loaded = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="gpt2demo-remote", daemon=True)
        self._client: httpx.AsyncClient | None = None
        self._streams: dict[Ticket, asyncio.Task] = {}  # touched on the loop's thread only
        self._running = 0  # len(_streams), for stats() from any thread
        self._closed = False

    def start(self) -> RemoteEngine:
        """Connect and load the tokenizer in the background; returns at once."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._load(), self._loop)
        return self

    # ------------------------------------------------------------ loading

    async def _load(self) -> None:
        started = time.perf_counter()
        log(f"connecting to the generation server at {self.url} ...")
        try:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.read_seconds, connect=self.connect_seconds),
                                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
            entry = served_entry(await self._get_json(self.url + "/models"), self.spec, self.url)
            folder = await asyncio.to_thread(find_tokenizer, self.spec or tokenizer_spec(entry))
            tokenizer = await asyncio.to_thread(load_tokenizer, folder.path)
            model = ServedModel(tokenizer, folder, str(entry["id"]), entry.get("max_model_len"))
            await self._check_tokenizer(model)
            self.features = await self._probe(model)
            version = await self._version()
            facts = model.facts(f"vLLM {version}" if version else "remote", self.features, time.perf_counter() - started)
            self.model = model
            self._state = EngineState("ready", self._state.spec, "remote", facts=facts)
            log(f"serving {facts.name} from {self.url}: window {facts.window}, "
                f"candidates {'on' if PROCESSED in self.features else 'off (start vLLM with --logprobs-mode processed_logprobs)'}")
        except Exception as error:  # the page must say why, never leave requests waiting forever
            failure = self._as_demo_error(error)
            self._state = EngineState("failed", self._state.spec, "remote", error=failure)
            log(f"the generation server cannot be used: {failure}")
        finally:
            self._loaded.set()

    async def _get_json(self, url: str):
        """A GET that must answer 200 with JSON (else the server is not an OpenAI-compatible one)."""
        response = await self._client.get(url)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code != 200 or payload is None:
            raise EngineUnavailable("engine_protocol", detail=f"GET {url}: HTTP {response.status_code}")
        return payload

    async def _post_json(self, url: str, body: dict) -> tuple[int, object]:
        """A POST's status and its JSON (or the start of its text)."""
        response = await self._client.post(url, json=body)
        return response.status_code, _json_or_text(response.content)

    async def _check_tokenizer(self, model: ServedModel) -> None:
        """The server's tokenizer must read a text as ours does (skipped where the server has no /tokenize)."""
        status, payload = await self._post_json(self.root + "/tokenize", {"model": model.served_name, "prompt": TOKENIZER_CHECK,
                                                                          "add_special_tokens": False})
        if status != 200 or not isinstance(payload, dict) or "tokens" not in payload:
            return
        if list(payload["tokens"]) != model.encode(TOKENIZER_CHECK):
            raise EngineUnavailable("tokenizer_mismatch", url=self.url, folder=model.folder.name,
                                    served=model.served_name)

    async def _probe(self, model: ServedModel) -> frozenset[str]:
        """One token with top-k = 1 and 2 logprobs: processed logprobs show the cut, raw ones do not."""
        body = completion_body(model.served_name, model.start_token_ids, SamplingSettings(top_k=1), seed=0,
                               max_tokens=1, logprobs=2, stream=False)
        status, payload = await self._post_json(self.url + "/completions", body)
        if status == 400:  # logprobs refused (--max-logprobs below 2): Generate works, the views say what is missing
            return frozenset()
        if status != 200 or not isinstance(payload, dict) or not payload.get("choices"):
            raise server_error(payload, status)
        tokens = choice_tokens(payload["choices"][0])
        return frozenset({PROCESSED}) if tokens and is_processed(tokens[0].top) else frozenset()

    async def _version(self) -> str | None:
        try:
            payload = (await self._client.get(self.root + "/version")).json()
        except (httpx.HTTPError, ValueError):
            return None
        return str(payload.get("version")) if isinstance(payload, dict) and payload.get("version") else None

    def _as_demo_error(self, error: Exception) -> DemoError:
        """A failure as data the page can word: connection refused, timed out, cut off, or the server's own words."""
        if isinstance(error, DemoError):
            return error
        detail = f"{type(error).__name__}: {error}"[:DETAIL_CHARS]
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
            return EngineUnavailable("engine_unreachable", url=self.url, detail=detail)
        if isinstance(error, httpx.TimeoutException):
            return EngineUnavailable("engine_timeout", url=self.url, seconds=self.read_seconds)
        if isinstance(error, httpx.HTTPError):  # the connection broke: the server stopped, crashed or was cut off
            return EngineUnavailable("gone", url=self.url, detail=detail)
        return GenerationFailed("step_failed", kind=type(error).__name__, detail=str(error)[:DETAIL_CHARS])

    # ------------------------------------------------------------ the interface

    @property
    def loaded(self) -> threading.Event:
        return self._loaded

    @property
    def state(self) -> EngineState:
        return self._state

    def _unavailable(self) -> DemoError | None:
        state = self._state
        if self._closed:
            return EngineUnavailable("closed")
        if state.phase == "loading":
            return EngineUnavailable("loading", spec=state.spec)
        return state.error if state.phase == "failed" else None

    def _ready_model(self) -> ServedModel:
        refusal = self._unavailable()
        if refusal is not None:
            raise refusal
        return self.model

    def submit(self, request: Request) -> Ticket:
        ticket = Ticket(on_cancel=self._cancel_soon)
        if not self._on_loop(self._begin, request, ticket):
            ticket.fail(EngineUnavailable("closed"))
        return ticket

    def race(self, token_ids: tuple[int, ...], count: int) -> Ticket:
        ticket = Ticket()
        ticket.fail(EngineUnavailable("unsupported", feature="race"))  # it times this machine's own cache
        return ticket

    async def tokenize(self, text: str) -> Tokens:
        model = self._ready_model()

        def tokens() -> Tokens:
            ids = model.encode(check_prompt(text))
            return Tokens(tuple(ids), tuple(model.pieces.many(ids)))

        return await asyncio.to_thread(tokens)  # a long paste takes ~10 ms: off the event loop

    async def fit(self, prompt: str, max_new_tokens: int) -> PromptFit:
        model = self._ready_model()
        max_new_tokens = check_integer("max_new_tokens", max_new_tokens, *BOUNDS.max_new_tokens)
        return await asyncio.to_thread(lambda: model.fit(model.encode(check_prompt(prompt)), max_new_tokens))

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running)  # the requests this front end has open; vLLM queues its own

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(CLOSE_SECONDS)
        except Exception:  # noqa: BLE001 - closing must not fail; what is left dies with the loop
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        tasks = list(self._streams.values())
        for ticket in list(self._streams):
            ticket.fail(EngineUnavailable("closed"))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    # ------------------------------------------------------------ streams, on the loop's thread

    def _on_loop(self, callback, *args) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
            return True
        except RuntimeError:  # the loop is closed
            return False

    def _cancel_soon(self, ticket: Ticket) -> None:
        self._on_loop(self._cancel, ticket)

    def _cancel(self, ticket: Ticket) -> None:
        task = self._streams.get(ticket)
        if task is not None:
            task.cancel()  # closing the connection is what tells vLLM to abort the request

    def _begin(self, request: Request, ticket: Ticket) -> None:
        refusal = self._unavailable()
        if refusal is None and len(self._streams) >= self.max_requests:
            refusal = EngineBusy("busy", ahead=len(self._streams))
        try:
            if refusal is not None:
                raise refusal
            generation = RemoteGeneration(self.model, request, PROCESSED in self.features)
        except Exception as error:  # noqa: BLE001 - a refusal, a bad prompt, a tokenizer failure: this ticket only
            ticket.fail(self._as_demo_error(error))
            return
        ticket.accept(generation.accepted)
        steps = list(generation.forced_steps)
        if ticket.cancelled and generation.finish_reason is None:
            steps.append(generation.stopped_step())
        if steps:
            ticket.deliver(steps, finished=generation.finish_reason is not None)
        if generation.finish_reason is None:  # the picks alone may have ended it
            self._streams[ticket] = self._loop.create_task(self._stream(generation, ticket))
            self._running = len(self._streams)

    async def _stream(self, generation: RemoteGeneration, ticket: Ticket) -> None:
        try:
            await self._read_stream(generation, ticket)
        except asyncio.CancelledError:
            if not ticket.cancelled:  # the engine is closing: its tickets were failed already
                raise
            if generation.finish_reason is None:
                ticket.deliver([generation.stopped_step()], finished=True)
        except Exception as error:  # noqa: BLE001 - every failure ends this ticket, and only this one
            ticket.fail(self._as_demo_error(error))
        finally:
            self._streams.pop(ticket, None)
            self._running = len(self._streams)

    async def _read_stream(self, generation: RemoteGeneration, ticket: Ticket) -> None:
        async with self._client.stream("POST", self.url + "/completions", json=generation.body()) as response:
            if response.status_code != 200:
                raise server_error(_json_or_text(await response.aread()), response.status_code)
            ticket.set_ahead(0, admitted=True)  # the server has the request: the page stops saying "waiting"
            async for line in response.aiter_lines():
                data = sse_data(line)
                chunk = None if data is None else parse_event(data)
                if chunk is None and data is not None:  # [DONE]
                    break
                steps = generation.take(chunk) if chunk is not None else []
                if steps:
                    ticket.deliver(steps, finished=generation.finish_reason is not None)
                if generation.finish_reason is not None:
                    return  # leaving closes the connection; the server has nothing left to send
        raise EngineUnavailable("gone", url=self.url, detail="the stream ended before the text did")


def _json_or_text(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")[:DETAIL_CHARS]
