"""The catalogue of test types and their codes: the built-in RT-PCR and rapid antigen tests, and those plugins add.

Plugins add types through the ``testing_register_test_types`` hook; the
codes are what labs and FHIR systems exchange (LOINC for the test, the EU
DCC value set for the certificate's ``tt``).
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
import structlog

from core import InvalidInput

if TYPE_CHECKING:
    from core.platform import Platform

log = structlog.get_logger("testing.catalogue")

TypeCode = Annotated[str, msgspec.Meta(min_length=2, max_length=40, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Loinc = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,7}-[0-9]$")]


class TestType(msgspec.Struct, frozen=True, kw_only=True):
    """One kind of test.

    ``code`` is phongdich's short name (``rt-pcr``); ``loinc`` the LOINC code
    of the test; ``method`` ``naat`` (nucleic acid amplification) or
    ``antigen``; ``poolable`` whether samples may be pooled (only NAAT is
    sensitive enough); ``dcc_type`` the EU DCC ``tt`` value (LP6464-4 NAAT,
    LP217198-3 rapid antigen); ``dcc_name`` the DCC ``nm`` (NAAT test name)
    and ``dcc_device`` the DCC ``ma`` (the rapid test's device id on the EU
    common list, without which no antigen certificate can be issued).
    """

    __test__ = False  # not a pytest test class

    code: TypeCode
    loinc: Loinc
    name_vi: str
    name_en: str
    method: Literal["naat", "antigen"]
    poolable: bool
    dcc_type: str
    dcc_name: str | None = None
    dcc_device: str | None = None


RT_PCR = TestType(
    code="rt-pcr",
    loinc="94500-6",
    name_vi="RT-PCR SARS-CoV-2",
    name_en="SARS-CoV-2 RT-PCR",
    method="naat",
    poolable=True,
    dcc_type="LP6464-4",
    dcc_name="SARS-CoV-2 RT-PCR",
)
RAPID_ANTIGEN = TestType(
    code="rapid-antigen",
    loinc="94558-4",
    name_vi="Test nhanh kháng nguyên SARS-CoV-2",
    name_en="SARS-CoV-2 rapid antigen test",
    method="antigen",
    poolable=False,
    dcc_type="LP217198-3",
)
BUILT_IN: tuple[TestType, ...] = (RT_PCR, RAPID_ANTIGEN)

_cache: weakref.WeakKeyDictionary[Platform, dict[str, TestType]] = weakref.WeakKeyDictionary()


def known_test_types(platform: Platform) -> dict[str, TestType]:
    """Every test type the loaded plugins declare, by code (collected once per platform)."""
    known = _cache.get(platform)
    if known is None:
        known = {}
        for plugin_name, contributed in platform.hooks.collect_by_plugin("testing_register_test_types"):
            for item in contributed:
                try:
                    test_type = msgspec.convert(msgspec.to_builtins(item), TestType)
                except msgspec.ValidationError as exc:
                    log.error("testing.bad_test_type", plugin=plugin_name, error=str(exc))
                    continue
                if test_type.code in known and known[test_type.code] != test_type:
                    log.error("testing.test_type_clash", plugin=plugin_name, code=test_type.code)
                    continue
                known[test_type.code] = test_type
        _cache[platform] = known
    return known


def get_test_type(platform: Platform, code: str) -> TestType:
    """The test type ``code``, or a 400 naming the field and the known codes."""
    known = known_test_types(platform)
    found = known.get(code)
    if found is None:
        raise InvalidInput(f"test_type: unknown test type {code!r}; known: {', '.join(sorted(known))}")
    return found
