"""Byte-level tokens and the characters they form: GPT-2's byte table, token pieces, grouping by characters."""

from gpt2demo.pieces import TokenPiece, byte_of_symbol, group_pieces, token_piece

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
