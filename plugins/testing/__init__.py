"""testing: sample collection, pooled testing, lab results and online result return.

The national plugin. This package currently declares its processing
purposes; samples, pools, results and certificates arrive with issue #4.
"""

from core import Purpose, hookimpl


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="testing.results",
            basis="public_health",
            description_vi="Lấy mẫu xét nghiệm và trả kết quả trực tuyến cho bạn.",
            description_en="Collecting your test sample and returning your result online.",
        ),
    ]
