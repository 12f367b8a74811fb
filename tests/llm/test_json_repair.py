"""The tolerant JSON reader, on the ways small models break JSON."""

import random

import pytest

from recbole_hnlm.llm.json_repair import json_object_complete, parse_llm_json
from recbole_hnlm.llm.prompts import usable_answer


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"summary": "A toy story."}', {"summary": "A toy story."}),
        ('```json\n{"summary": "Toys.", "keywords": ["toys"]}\n```', {"summary": "Toys.", "keywords": ["toys"]}),
        (
            'Sure! Here it is: {"summary": "x", "keywords": ["a", "b",],} Hope it helps.',
            {"summary": "x", "keywords": ["a", "b"]},
        ),
        (
            "{'summary': 'A children's film', 'keywords': ['kids']}",
            {"summary": "A children's film", "keywords": ["kids"]},
        ),
        ('{"summary": "A fun movie about toys', {"summary": "A fun movie about toys"}),
        ('{"summary": "x", "keywords": ["a", "b', {"summary": "x", "keywords": ["a", "b"]}),
        ('{"summary": "x", "keywords":', {"summary": "x"}),
        ('{"summary": "x", "keyw', {"summary": "x"}),
        (
            "{summary: 'x', adult: False, rating: 4.5e0, studio: None}",
            {"summary": "x", "adult": False, "rating": 4.5, "studio": None},
        ),
        ('{"summary": "He said \\"hi\\"\nand left"}', {"summary": 'He said "hi" and left'}),
        ('{} then {"summary": "the second object"}', {"summary": "the second object"}),
        # Unescaped quotes inside a string break the structure; the string fields are salvaged.
        (
            '{"summary": "The series "Kolya" is a comedy.", "id":"3", "data:"{\n "x',
            {"summary": 'The series "Kolya" is a comedy.', "id": "3"},
        ),
        (
            '{"summary": "A film about a ninja.",""language":"json","data:"{\n "idle',
            {"summary": "A film about a ninja.", "language": "json"},
        ),
    ],
)
def test_repairs_broken_json(answer, expected):
    assert parse_llm_json(answer) == expected


@pytest.mark.parametrize("answer", ["", "no json here", "[1, 2]", "{}", '{"summary"'])
def test_gives_none_without_an_object(answer):
    assert parse_llm_json(answer) is None


def test_object_complete_respects_strings():
    assert not json_object_complete('{"summary": "a } inside"')
    assert json_object_complete('{"summary": "a } inside"} trailing prose')
    assert not json_object_complete('{"keywords": ["a", "b"]')


def test_usable_answer_needs_the_required_key_filled_in():
    assert usable_answer("item_profile", None) == (None, "no JSON object in the answer")
    assert usable_answer("item_profile", {"keywords": ["a"]})[0] is None
    copied, reason = usable_answer("item_profile", {"summary": "<one sentence on plot and tone>"})
    assert copied is None and "placeholder" in reason
    cleaned, _ = usable_answer("item_profile", {"summary": "  Toys\n come alive. ", "keywords": "toys"})
    assert cleaned == {"summary": "Toys come alive.", "keywords": ["toys"]}
    cleaned, _ = usable_answer("negative", {"description": "A slapstick parody.", "title": 7})
    assert cleaned == {"description": "A slapstick parody."}


def test_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = [*"{}[]\"':,\\ \n\tabcXYZ019.-_éüß中", "True", "None", '{"summary": "', '", "', '\\"']
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert parse_llm_json(text) is None or isinstance(parse_llm_json(text), dict)


def test_non_ascii_bare_words():
    assert parse_llm_json("{summary: Amélie, 'x': 1") == {"summary": "Amélie", "x": 1}
