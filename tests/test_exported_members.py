import abflow


def test_all_is_sorted_and_resolves() -> None:
    assert abflow.__all__ == sorted(abflow.__all__)
    for name in abflow.__all__:
        assert getattr(abflow, name) is not None, name


def test_unknown_attribute_raises() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = abflow.nope
