import pytest

from gpt2demo.textstream import TextStream

TEXTS = {
    "english": "Yesterday, a man named Jack said he saw an alien, and nobody believed him.",
    "chinese": "昨天，一个名叫杰克的人说他看到了外星人。",
    "emoji": "Aliens 👽🛸 landed! 🎉 Family: 👨‍👩‍👧",
}


@pytest.mark.parametrize("name", TEXTS)
def test_joined_deltas_equal_the_full_decode_and_never_show_half_characters(tiny_model, name):
    ids = tiny_model.encode(TEXTS[name])
    stream = TextStream(tiny_model.tokenizer)
    deltas = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(deltas) == tiny_model.tokenizer.decode(ids) == TEXTS[name]
    assert not any("\ufffd" in d for d in deltas)


def test_a_character_split_over_tokens_is_held_back_until_complete(tiny_model):
    ids = tiny_model.encode("你")  # one character, two byte-level tokens
    assert ids == [19526, 254]
    stream = TextStream(tiny_model.tokenizer)
    assert stream.push(ids[0]) == ""
    assert stream.push(ids[1]) == "你"


def test_flush_hands_out_an_unfinished_character_so_nothing_is_lost(tiny_model):
    stream = TextStream(tiny_model.tokenizer)
    assert stream.push(19526) == ""
    assert stream.flush() == "\ufffd"
