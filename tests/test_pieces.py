"""Byte-level tokens and the characters they form: GPT-2's byte table, token pieces, grouping by characters."""

import pickle

from gpt2demo.pieces import TokenPiece, byte_of_symbol, group_pieces, token_piece
from gpt2demo.serving.interface import Candidate, Step

EOS = 50256


def piece(token_id: int, data: bytes) -> TokenPiece:
    return TokenPiece(token_id, "", data)


def test_the_byte_table_is_gpt2s():
    table = byte_of_symbol()
    assert len(table) == 256 and sorted(table.values()) == list(range(256))
    assert (table["Ġ"], table["Ċ"], table["A"], table["ä"]) == (0x20, 0x0A, 0x41, 0xE4)


def test_chinese_characters_become_several_byte_tokens(tiny_model):
    ids = tiny_model.encode("今天 Hello")
    assert ids == [20015, 232, 25465, 18435]
    groups = group_pieces(tiny_model.pieces.many(ids))
    assert [(g.text, [p.token_id for p in g.tokens], [p.hex for p in g.tokens]) for g in groups] == [
        ("今", [20015, 232], ["e4 bb", "8a"]),
        ("天", [25465], ["e5 a4 a9"]),
        (" Hello", [18435], ["20 48 65 6c 6c 6f"]),
    ]
    assert [g.split for g in groups] == [True, False, False]
    assert [p.whole for p in tiny_model.pieces.many(ids)] == [False, False, True, True]
    assert token_piece(tiny_model.tokenizer, 18435).piece == "ĠHello"
    assert token_piece(tiny_model.tokenizer, EOS).data == b"<|endoftext|>"  # a special token spells itself


def test_the_piece_table_gives_what_token_piece_gives(tiny_model):
    ids = [20015, 232, 25465, 18435, EOS]
    assert tiny_model.pieces.many(ids) == [token_piece(tiny_model.tokenizer, token_id) for token_id in ids]
    assert tiny_model.pieces[232].text == "\ufffd"  # half a character, decoded alone


def test_grouping_handles_tokens_across_characters_and_bad_bytes():
    across = group_pieces([piece(1, b"\xe4\xbb"), piece(2, b"\x8a\xe5"), piece(3, b"\xa4\xa9"), piece(4, b"!")])
    assert [(g.text, [p.token_id for p in g.tokens]) for g in across] == [("今天", [1, 2, 3]), ("!", [4])]
    bad = group_pieces([piece(1, b"\x8a"), piece(2, b"a"), piece(3, b"\xe4")])
    assert [(g.text, [p.token_id for p in g.tokens]) for g in bad] == [("\ufffd", [1]), ("a", [2]), ("\ufffd", [3])]


def test_an_emoji_is_four_bytes_in_two_tokens(tiny_model):
    groups = group_pieces(tiny_model.pieces.many(tiny_model.encode("🙂")))
    assert len(groups) == 1 and groups[0].text == "🙂"
    assert b"".join(p.data for p in groups[0].tokens) == "🙂".encode() and len(groups[0].tokens) == 2


def test_unpickled_pieces_are_one_shared_instance_per_token_across_messages():
    # Steps reach the front end pickled, 16 pieces a token: it must not keep a copy of each.
    man = TokenPiece(582, "Ġman", b" man")
    step = Step(0, man, " man", 0.5, (Candidate(man, 0.5, True), Candidate(TokenPiece(13, ".", b"."), 0.2, True)))
    first, second = pickle.loads(pickle.dumps([step])), pickle.loads(pickle.dumps(step))
    assert first[0] == second == step  # equal values...
    assert first[0].piece is first[0].candidates[0].piece is second.piece  # ...and one object for the same token
    assert second.candidates[1].piece is pickle.loads(pickle.dumps(TokenPiece(13, ".", b".")))
    other = pickle.loads(pickle.dumps(TokenPiece(582, "Ġman", b" woman")))  # other bytes: another piece
    assert other.data == b" woman" and other is not second.piece
