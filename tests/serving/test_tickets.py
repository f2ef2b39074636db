"""A request's stream: items in order, taken in batches by a paced page, ended by its last item or an error."""

import asyncio

import pytest

from gpt2demo.errors import GenerationFailed
from gpt2demo.pieces import TokenPiece
from gpt2demo.serving.interface import Accepted, PromptFit, Step
from gpt2demo.serving.tickets import Ticket


def step(index: int, finish_reason: str | None = None) -> Step:
    return Step(index, TokenPiece(100 + index, f"t{index}", f"t{index}".encode()), f"t{index}", 0.5, (), finish_reason)


async def settle() -> None:
    """Let every callback already scheduled on this loop run (a wake-up from deliver() is one)."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_take_returns_every_item_delivered_so_far_and_nothing_twice():
    async def run():
        ticket = Ticket()
        ticket.deliver([step(0), step(1)])
        ticket.deliver([step(2)])
        assert await ticket.take(1.0) == [step(0), step(1), step(2)]
        ticket.deliver([step(3, "length")], finished=True)
        assert await ticket.take(1.0) == [step(3, "length")]
        assert ticket.done and await ticket.take(1.0) == []

    asyncio.run(run())


def test_take_waits_for_the_first_item_then_returns_at_once():
    async def run():
        ticket = Ticket()
        task = asyncio.create_task(ticket.take(60.0))
        await settle()
        assert not task.done()
        ticket.deliver([step(0)])
        assert await asyncio.wait_for(task, 10) == [step(0)]

    asyncio.run(run())


def test_while_holding_only_the_last_item_wakes_the_page():
    async def run():
        ticket = Ticket()
        task = asyncio.create_task(ticket.take(60.0, hold=60.0))
        await settle()
        ticket.deliver([step(0), step(1)])  # ordinary steps: held back, no wake-up
        await settle()
        assert not task.done()
        ticket.deliver([step(2, "length")], finished=True)  # the end: at once
        assert await asyncio.wait_for(task, 10) == [step(0), step(1), step(2, "length")]

    asyncio.run(run())


def test_take_gives_nothing_after_its_timeout_and_a_later_delivery_is_kept():
    async def run():
        ticket = Ticket()
        assert await ticket.take(0.01) == []
        ticket.deliver([step(0)])  # no waiter left behind to wake
        assert await ticket.take(1.0) == [step(0)]

    asyncio.run(run())


def test_an_error_comes_after_the_items_delivered_before_it():
    async def run():
        ticket = Ticket()
        ticket.deliver([step(0)])
        ticket.fail(GenerationFailed("step_failed", kind="RuntimeError", detail="simulated"))
        assert await ticket.take(1.0, hold=60.0) == [step(0)]
        with pytest.raises(GenerationFailed) as error:
            await ticket.take(1.0)
        assert error.value.facts == {"kind": "RuntimeError", "detail": "simulated"}

    asyncio.run(run())


def test_accepted_waits_for_the_engine_and_a_refusal_is_raised():
    fit = PromptFit((1, 2), "ab", 10, 1024)

    async def run():
        ticket = Ticket()
        task = asyncio.create_task(ticket.accepted())
        await settle()
        assert not task.done()
        ticket.accept(Accepted(seed=7, prompt=fit, ahead=3))
        assert await asyncio.wait_for(task, 10) == Accepted(7, fit, 3)
        assert (ticket.seed, ticket.prompt, ticket.ahead) == (7, fit, 3)
        refused = Ticket()
        refused.fail(GenerationFailed("step_failed", kind="X", detail="y"))
        with pytest.raises(GenerationFailed):
            await refused.accepted()

    asyncio.run(run())


def test_iterating_blocks_for_each_item_and_ends_with_the_last():
    ticket = Ticket()
    ticket.deliver([step(0), step(1, "eos")], finished=True)
    assert list(ticket) == [step(0), step(1, "eos")]


def test_cancel_tells_the_engine_once():
    cancelled = []
    ticket = Ticket(on_cancel=cancelled.append)
    ticket.cancel()
    ticket.cancel()
    assert cancelled == [ticket] and ticket.cancelled
