from recsys_training.raw_store import RawStore, Watermark, merge_new
from tests.conftest import interactions


def test_first_load_then_only_new_rows_are_appended(tmp_path):
    store = RawStore(tmp_path)
    first = interactions([("u", "a", 10), ("u", "b", 20), ("v", "a", 20)])
    merged, new = merge_new(None, first, None)
    mark = store.save(merged)
    assert new == 3 and mark.max_timestamp == 20 and mark.rows == 3

    # the source re-sends everything plus one row at the watermark and one after it
    again = interactions([("u", "a", 10), ("u", "b", 20), ("v", "a", 20), ("w", "c", 20), ("u", "d", 30)])
    existing, watermark = store.load()
    merged, new = merge_new(existing, again, watermark)
    assert new == 2
    assert sorted(merged["item_id"]) == ["a", "a", "b", "c", "d"]


def test_rerun_without_new_data_changes_nothing(tmp_path):
    store = RawStore(tmp_path)
    rows = interactions([("u", "a", 10), ("u", "b", 20)])
    mark = store.save(merge_new(None, rows, None)[0])
    existing, watermark = store.load()
    merged, new = merge_new(existing, rows, watermark)
    assert new == 0 and merged is existing
    assert Watermark.of(merged) == mark


def test_rows_older_than_the_watermark_are_not_reloaded(tmp_path):
    existing = interactions([("u", "a", 50)])
    late = interactions([("u", "z", 40)])  # arrives late with an old timestamp: before the watermark
    merged, new = merge_new(existing, late, Watermark.of(existing))
    assert new == 0 and len(merged) == 1


def test_digest_depends_on_content_not_order():
    a = interactions([("u", "a", 1), ("v", "b", 2)])
    assert Watermark.of(a).digest == Watermark.of(a.iloc[::-1]).digest
    assert Watermark.of(a).digest != Watermark.of(interactions([("u", "a", 1), ("v", "c", 2)])).digest
