"""BoundedDict, the one bounded table of the gateway, against a model; and BucketTable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loragate.bounded import BoundedDict
from loragate.ratelimit import BucketTable

ops = st.lists(
    st.tuples(st.sampled_from(["put", "touch", "pop", "get"]), st.integers(0, 9), st.integers()),
    max_size=200,
)


@given(st.integers(1, 6), ops)
def test_holds_the_most_recently_written_and_tells_what_it_evicts(maxlen: int, seq) -> None:  # noqa: ANN001
    evicted: list[tuple[int, int]] = []
    d: BoundedDict[int, int] = BoundedDict(maxlen, on_evict=lambda k, v: evicted.append((k, v)))
    model: list[tuple[int, int]] = []  # oldest first
    gone: list[tuple[int, int]] = []
    for op, key, value in seq:
        held = dict(model)
        if op == "put":
            model = [(k, v) for k, v in model if k != key] + [(key, value)]
            while len(model) > maxlen:
                gone.append(model.pop(0))
            d.put(key, value)
        elif op == "touch":
            assert d.touch(key) == (key in held)
            if key in held:
                model = [(k, v) for k, v in model if k != key] + [(key, held[key])]
        elif op == "pop":
            assert d.pop(key) == held.get(key)
            model = [(k, v) for k, v in model if k != key]
        else:  # a read never changes the order
            assert d.get(key) == held.get(key) and (key in d) == (key in held)
        assert list(d.items()) == model and len(d) <= maxlen
    assert evicted == gone and d.evictions == len(gone)


def test_oldest_first_and_errors() -> None:
    d: BoundedDict[str, int] = BoundedDict(3)
    d["a"], d["b"], d["c"] = 1, 2, 3
    assert list(d) == ["a", "b", "c"] and d.pop_oldest() == ("a", 1)
    del d["b"]
    assert list(d.keys()) == ["c"] and d["c"] == 3
    assert d.setdefault("c", 9) == 3 and d.setdefault("d", 4) == 4 and list(d) == ["c", "d"]
    d.clear()
    with pytest.raises(KeyError):
        d.pop_oldest()
    with pytest.raises(ValueError):
        BoundedDict(0)


def test_bucket_table_limits_each_key_and_forgets_the_least_recent() -> None:
    t: BucketTable[str] = BucketTable(rate=1.0, burst=2, maxlen=2)
    assert [t.take("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert t.take("b", now=0.0) and t.take("a", now=1.0)  # a refilled one token
    assert t.take("c", now=1.0)  # the table is full: b, least recently used, is forgotten
    assert len(t) == 2
    assert t.take("b", now=1.0) and t.take("b", now=1.0)  # a fresh bucket: full again
    with pytest.raises(ValueError):
        BucketTable(rate=-1, burst=1, maxlen=4)
