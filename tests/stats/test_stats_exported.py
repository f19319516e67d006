import abflow.stats


def test_stats_all_is_sorted_and_resolves() -> None:
    assert abflow.stats.__all__ == sorted(abflow.stats.__all__)
    for name in abflow.stats.__all__:
        assert getattr(abflow.stats, name) is not None, name
