"""checkin: venue QR check-in, electronic health declaration and contact tracing.

The national plugin that replaces qr.tokhaiyte.vn. This package currently
declares its processing purposes; venues, check-ins and tracing arrive with
issue #3.
"""

from core import Purpose, hookimpl


@hookimpl
def register_purposes() -> list[Purpose]:
    return [
        Purpose(
            name="checkin.tracing",
            basis="public_health",
            description_vi="Ghi nhận nơi bạn đã đến để truy vết F0, F1, F2 khi có ca bệnh.",
            description_en="Recording where you checked in, to trace contacts (F0, F1, F2) of a case.",
        ),
        Purpose(
            name="checkin.declaration",
            basis="public_health",
            description_vi="Khai báo y tế điện tử khi vào nơi công cộng.",
            description_en="Your electronic health declaration at public places.",
        ),
    ]
