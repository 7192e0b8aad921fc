"""Numbers Python holds but a float cannot (10**400 from a script or the API) are refused like any out-of-range value."""

import sys
from fractions import Fraction

import pytest

from sag_core.params import SagParamError, SagParams

HUGE = 10**400
SCALE_RANGE = r"scale \(SAG scale\) must be a number from -2 to 5; got 1000000000"


@pytest.mark.parametrize("build", [
    lambda: SagParams.from_args([True, HUGE]),
    lambda: SagParams.from_args([{"enabled": True, "scale": HUGE}]),
    lambda: SagParams.from_mapping({"enabled": True, "scale": HUGE}),
    lambda: SagParams(True).with_overrides({"scale": HUGE}),
    lambda: SagParams(True, HUGE),
], ids=["from_args", "from_args-dict", "from_mapping", "with_overrides", "constructor"])
def test_an_int_beyond_float_range_is_refused_naming_the_field_and_range(build):
    with pytest.raises(SagParamError, match=SCALE_RANGE) as caught:
        build()
    assert caught.value.field == "scale"
    assert "(401 characters)" in str(caught.value)


def test_negative_huge_ints_and_huge_fractions_are_refused_for_every_numeric_field():
    for attr in ("scale", "blur_sigma", "threshold", "start", "end"):
        for value in (-HUGE, Fraction(HUGE, 3)):
            with pytest.raises(SagParamError) as caught:
                SagParams.from_mapping({"enabled": True, attr: value})
            assert caught.value.field == attr and "must be a number from" in str(caught.value)


def test_an_int_too_long_to_print_is_still_refused_with_a_readable_message():
    digits = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
    with pytest.raises(SagParamError, match=r"blur_sigma \(SAG blur sigma\) must be a number from 0 to 10; "
                                            r"got an integer of \d+ bits"):
        SagParams.from_args([True, 0.5, 10 ** (digits + 10)])


def test_infotext_with_a_number_beyond_float_range_is_refused():
    with pytest.raises(SagParamError) as caught:
        SagParams.from_infotext({"SAG scale": "0.5", "SAG threshold": "1" + "0" * 400})
    assert caught.value.field == "threshold"

