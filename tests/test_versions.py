import pytest

from clearml_data.versions import bump, next_version, sort_key


@pytest.mark.parametrize(
    "old,new",
    [
        ("1.0.0", "1.0.1"),
        ("1.0", "1.1"),
        ("1.0.0rc1", "1.0.0rc2"),
        ("2", "3"),
        ("1.0.post1", "1.0.post2"),
        ("1.0.dev3", "1.0.dev4"),
        ("not a version", "1.0.0"),
    ],
)
def test_bump(old, new):
    assert bump(old) == new


def test_next_version_is_above_the_highest_and_free():
    assert next_version([]) == "1.0.0"
    assert next_version(["1.0.0", "1.0.9", "1.0.10"]) == "1.0.11"
    assert next_version(["1.0.0", "weird"]) == "1.0.1"


def test_sort_key_orders_pep440_above_invalid():
    assert sorted(["1.0.10", "1.0.9", "abc", "1.0.0rc1", "1.0.0"], key=sort_key) == [
        "abc",
        "1.0.0rc1",
        "1.0.0",
        "1.0.9",
        "1.0.10",
    ]
