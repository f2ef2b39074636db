import random

import pytest
from transformers import AutoTokenizer, BertTokenizer

from gpt2demo.textstream import TextStream, decodes_piecewise

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


def deltas(stream: TextStream, ids: list[int]) -> list[str]:
    return [stream.push(i) for i in ids] + [stream.flush()]


def test_gpt2s_tokenizer_decodes_piecewise_and_a_stream_of_it_decodes_only_the_new_ids(tiny_model):
    assert decodes_piecewise(tiny_model.tokenizer) and tiny_model.decodes_piecewise

    class CountingTokenizer:  # the real tokenizer, with the ids each decode was asked for recorded
        def __init__(self):
            self.asked = []

        def decode(self, ids, skip_special_tokens):
            self.asked.append(list(ids))
            return tiny_model.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    counting = CountingTokenizer()
    ids = tiny_model.encode("Hi 你")  # "Hi", " ", then 你 as two byte-level tokens
    assert deltas(TextStream(counting, piecewise=True), ids) == ["Hi", " ", "", "你", ""]
    assert counting.asked == [ids[:1], ids[1:2], ids[2:3], ids[2:4], []]


@pytest.mark.parametrize("seed", range(4))
def test_piecewise_decoding_hands_out_the_same_deltas_push_for_push(tiny_model, seed):
    # Ids that split characters, end texts, and never complete a character, in random order.
    generator = random.Random(seed)
    pool = tiny_model.encode("".join(TEXTS.values())) + [tiny_model.eos_token_id, 19526, 254, 9468, 237, 238]
    ids = [generator.choice(pool) if generator.random() < 0.8 else generator.randrange(50257) for _ in range(400)]
    whole = deltas(TextStream(tiny_model.tokenizer), ids)
    assert deltas(TextStream(tiny_model.tokenizer, piecewise=True), ids) == whole
    assert "".join(whole) == tiny_model.tokenizer.decode(ids, skip_special_tokens=True)


def test_tokenizers_that_join_tokens_otherwise_do_not_decode_piecewise(tiny_model_dir):
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "你", "好", "##好", "a"]
    wordpiece = BertTokenizer(vocab={piece: index for index, piece in enumerate(pieces)})
    # A space between whole tokens, none before a "##" piece: decode(a + b) != decode(a) + decode(b).
    assert (wordpiece.decode([5, 8]), wordpiece.decode([5, 7])) == ("你 a", "你好")
    assert not decodes_piecewise(wordpiece)
    assert not decodes_piecewise(AutoTokenizer.from_pretrained(tiny_model_dir, clean_up_tokenization_spaces=True))
    with_added = AutoTokenizer.from_pretrained(tiny_model_dir)
    with_added.add_tokens(["<teacher>"])
    assert not decodes_piecewise(with_added)
