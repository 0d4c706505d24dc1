"""Line protocol encoding: escaping, canonical order, refusal of values InfluxDB cannot store. Pure, no I/O."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from formcheck_aggregator.influx import Point, encode_line


def line(measurement: str = "m", tags: dict[str, str] | None = None, fields: dict[str, object] | None = None,
         ts: int = 1_700_000_000_000) -> str:
    return encode_line(Point(measurement, tags or {}, fields or {"v": 1.5}, ts))  # type: ignore[arg-type]


def test_plain_point() -> None:
    assert line("rep", {"node": "a"}, {"score": 87.5}) == "rep,node=a score=87.5 1700000000000"


def test_measurement_escapes_comma_and_space_only() -> None:
    assert line('a,b c=d"e') == 'a\\,b\\ c=d"e v=1.5 1700000000000'


@pytest.mark.parametrize(("raw", "escaped"), [
    ("a,b", "a\\,b"),
    ("a=b", "a\\=b"),
    ("a b", "a\\ b"),
    ("a, =b", "a\\,\\ \\=b"),
    ('a"b', 'a"b'),
    ("mü é", "mü\\ é"),
    ("tab\there", "tab\there"),
])
def test_tag_key_value_and_field_key_escaping(raw: str, escaped: str) -> None:
    assert line(tags={raw: raw}) == f"m,{escaped}={escaped} v=1.5 1700000000000"
    # field keys are unescaped for \" as well (tags are not), so their quotes get a backslash
    assert line(fields={raw: 1}) == f"m {escaped.replace(chr(34), chr(92) + chr(34))}=1i 1700000000000"


def test_field_key_quotes() -> None:
    assert line(fields={'a"b': 1}) == 'm a\\"b=1i 1700000000000'
    assert line(tags={'a"b': 'c"d'}) == 'm,a"b=c"d v=1.5 1700000000000'


@pytest.mark.parametrize(("raw", "escaped"), [
    ('say "hi"', '"say \\"hi\\""'),
    ("C:\\path\\", '"C:\\\\path\\\\"'),
    ('\\"', '"\\\\\\""'),
    ("two\nlines", '"two\nlines"'),
    ("a,b=c d", '"a,b=c d"'),
    ("", '""'),
])
def test_string_field_escapes_quotes_and_backslashes(raw: str, escaped: str) -> None:
    assert line(fields={"s": raw}) == f"m s={escaped} 1700000000000"


def test_value_types() -> None:
    encoded = line(fields={"i": 3, "n": -7, "f": 2.0, "t": True, "b": False, "e": 1e16, "small": 1.5e-7})
    assert encoded == "m b=false,e=1e+16,f=2.0,i=3i,n=-7i,small=1.5e-07,t=true 1700000000000"


def test_int64_bounds() -> None:
    assert line(fields={"v": 2**63 - 1}).startswith("m v=9223372036854775807i ")
    assert line(fields={"v": -(2**63)}).startswith("m v=-9223372036854775808i ")
    with pytest.raises(ValueError, match="int64"):
        line(fields={"v": 2**63})


def test_numpy_scalars_encode_like_python_numbers() -> None:
    assert line(fields={"i": np.int64(4), "f": np.float32(0.5), "g": np.float64(2.25), "b": np.bool_(True)}) == (
        "m b=true,f=0.5,g=2.25,i=4i 1700000000000"
    )


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="NaN and infinity"):
        line(fields={"ok": 1.0, "bad": bad})


def test_tags_sorted_and_equal_points_byte_identical() -> None:
    a = encode_line(Point("rep", {"node": "n1", "exercise": "squat", "member": "m7"}, {"z": 1, "a": 2}, 5))
    b = encode_line(Point("rep", {"member": "m7", "node": "n1", "exercise": "squat"}, {"a": 2, "z": 1}, 5))
    assert a == b == "rep,exercise=squat,member=m7,node=n1 a=2i,z=1i 5"


def test_empty_tag_values_are_left_out() -> None:
    assert line(tags={"member": "", "node": "a"}) == "m,node=a v=1.5 1700000000000"


def test_durable_and_retention_do_not_change_the_line() -> None:
    base = Point("frame", {"node": "a"}, {"v": 1}, 9)
    other = Point("frame", {"node": "a"}, {"v": 1}, 9, durable=False, retention="frames")
    assert encode_line(base) == encode_line(other)


@pytest.mark.parametrize(("point", "message"), [
    (Point("", {}, {"v": 1}, 0), "empty measurement"),
    (Point("#rep", {}, {"v": 1}, 0), "comment"),
    (Point("rep", {}, {}, 0), "no fields"),
    (Point("rep\n", {}, {"v": 1}, 0), "line break"),
    (Point("rep", {"k": "a\nb"}, {"v": 1}, 0), "line break"),
    (Point("rep", {"k": "a\rb"}, {"v": 1}, 0), "line break"),
    (Point("rep\\", {}, {"v": 1}, 0), "backslash"),
    (Point("re\\p", {}, {"v": 1}, 0), "backslash"),
    (Point("rep", {"k": "a\\"}, {"v": 1}, 0), "backslash"),
    (Point("rep", {"k": "a\\b"}, {"v": 1}, 0), "backslash"),
    (Point("rep", {"k\\": "a"}, {"v": 1}, 0), "backslash"),
    (Point("rep", {"k\\,": "a"}, {"v": 1}, 0), "backslash"),
    (Point("rep", {}, {"v\\": 1}, 0), "backslash"),
    (Point("rep", {}, {"a\\=b": 1}, 0), "backslash"),
    (Point("rep", {"": "a"}, {"v": 1}, 0), "empty tag key"),
    (Point("rep", {}, {"": 1}, 0), "empty field key"),
    (Point("rep", {"time": "a"}, {"v": 1}, 0), "reserved"),
    (Point("rep", {}, {"time": 1}, 0), "reserved"),
    (Point("rep", {}, {"v": 1}, 9_223_372_036_855), "outside"),
    (Point("rep", {}, {"v": 1}, -9_223_372_036_855), "outside"),
])
def test_unencodable_points_raise(point: Point, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        encode_line(point)


def test_wrong_types_raise() -> None:
    with pytest.raises(TypeError, match="unsupported type"):
        encode_line(Point("rep", {}, {"v": [1]}, 0))  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="ts_ms"):
        encode_line(Point("rep", {}, {"v": 1}, 1.5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ts_ms"):
        encode_line(Point("rep", {}, {"v": 1}, True))


def test_timestamp_extremes_inside_range() -> None:
    assert line(ts=9_223_372_036_854).endswith(" 9223372036854")
    assert line(ts=-1000).endswith(" -1000")


_TAG_ESCAPED = re.compile(r"\\([,= ])")
_FIELD_KEY_ESCAPED = re.compile(r'\\([,= "])')
_MEASUREMENT_ESCAPED = re.compile(r"\\([, ])")


def _unescape(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub(r"\1", text)


def _decode(encoded: str) -> tuple[str, dict[str, str], list[str]]:
    """Measurement, tags and field keys as InfluxDB 1.6.7 reads them (observed against a real influxd): a
    separator right after a backslash is escaped, any other backslash is literal."""
    head, fields, _ = re.split(r"(?<!\\) ", encoded)
    measurement, *pairs = re.split(r"(?<!\\),", head)
    tags = {}
    for pair in pairs:
        key, value = re.split(r"(?<!\\)=", pair)
        tags[_unescape(key, _TAG_ESCAPED)] = _unescape(value, _TAG_ESCAPED)
    keys = [_unescape(re.split(r"(?<!\\)=", f)[0], _FIELD_KEY_ESCAPED) for f in re.split(r"(?<!\\),", fields)]
    return _unescape(measurement, _MEASUREMENT_ESCAPED), tags, keys


names = st.text(st.characters(blacklist_characters="\n\r\\", blacklist_categories=("Cs",)), min_size=1, max_size=12)
names = names.filter(lambda s: s != "time" and not s.startswith("#"))


@given(measurement=names, tags=st.dictionaries(names, names | st.just(""), max_size=4),
       field_keys=st.lists(names, min_size=1, max_size=4, unique=True))
def test_round_trips_through_1x_unescaping(measurement: str, tags: dict[str, str], field_keys: list[str]) -> None:
    encoded = encode_line(Point(measurement, tags, dict.fromkeys(field_keys, 1), 0))
    decoded_measurement, decoded_tags, decoded_keys = _decode(encoded)
    assert decoded_measurement == measurement
    assert decoded_tags == {k: v for k, v in tags.items() if v}
    assert list(decoded_tags) == sorted(decoded_tags)
    assert decoded_keys == sorted(field_keys)
