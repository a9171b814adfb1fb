"""The city's own tables."""

from __future__ import annotations

from piccolo.columns import Timestamptz, Varchar
from piccolo.table import Table


class RiskZone(Table, tablename="hcmc_risk_zone"):
    """The risk level of one district (3-digit code) or ward (5-digit code); a ward's own level wins."""

    area = Varchar(length=5, primary_key=True)
    level = Varchar(length=6)
    note = Varchar(length=200, default="")
    set_by = Varchar(length=80)
    set_at = Timestamptz()


TABLES = (RiskZone,)
