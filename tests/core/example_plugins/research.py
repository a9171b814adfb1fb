"""A plugin with routes, purposes and roles: a survey that needs consent, outbreak
figures on the public-health basis, a list of cases scoped by role, and one action
that no role grants."""

from typing import Any

from litestar import get

from core import Purpose, Role, hookimpl
from core.principal import CITIZEN, EPIDEMIOLOGIST, NATIONAL_ADMIN
from core.web.guard import PrincipalDep

SURVEY = "research.survey"
OUTBREAK = "research.outbreak"
CASE_LIST = "research.case.list"
NOBODY = "research.nobody"


class Research:
    """Register as ``("research", Research())``: its routes sit under ``/api/research``."""

    def __init__(self, survey_version: int = 1) -> None:
        self.survey_version = survey_version

    @hookimpl
    def register_purposes(self) -> list[Purpose]:
        return [
            Purpose(
                name=SURVEY,
                basis="consent",
                version=self.survey_version,
                description_vi="Khảo sát tự nguyện về triệu chứng.",
                description_en="A voluntary symptom survey.",
            ),
            Purpose(
                name=OUTBREAK,
                basis="public_health",
                description_vi="Thông tin ổ dịch gần bạn.",
                description_en="Outbreak information near you.",
            ),
        ]

    @hookimpl
    def register_roles(self) -> list[Role]:
        return [
            Role(name=CITIZEN, scope="self", grants=frozenset({"research.survey.answer", "research.outbreak.read"})),
            Role(name=EPIDEMIOLOGIST, scope="province", grants=frozenset({CASE_LIST})),
            Role(name=NATIONAL_ADMIN, scope="national", grants=frozenset({CASE_LIST})),
        ]

    @hookimpl
    def register_routes(self, settings: Any) -> list[Any]:
        @get("/survey", opt={"action": "research.survey.answer", "purpose": SURVEY})
        async def survey(principal: PrincipalDep) -> dict[str, str]:
            return {"answered_by": principal.id}

        @get("/outbreak", opt={"action": "research.outbreak.read", "purpose": OUTBREAK})
        async def outbreak(principal: PrincipalDep) -> dict[str, str]:
            return {"shown_to": principal.id}

        @get("/nobody", opt={"action": NOBODY})
        async def nobody(principal: PrincipalDep) -> dict[str, str]:
            return {"leaked_to": principal.id}

        return [survey, outbreak, nobody]
