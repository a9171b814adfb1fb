"""vaccination: registration, priority groups, scheduling, dose records, certificates.

The national plugin. This package currently declares its processing
purposes; the registry, bookings and certificates arrive with issue #5.
"""

from core import Purpose, hookimpl


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="vaccination.records",
            basis="public_health",
            description_vi="Ghi nhận mũi tiêm và cấp chứng nhận tiêm chủng cho bạn.",
            description_en="Recording your doses and issuing your vaccination certificates.",
        ),
        Purpose(
            name="vaccination.reminders",
            basis="consent",
            description_vi="Nhắc bạn lịch tiêm mũi tiếp theo qua tin nhắn.",
            description_en="Reminding you by message when your next dose is due.",
        ),
    ]
