"""The operators' usage page: core-hours per user per day, as a table, a plot and CSV.

Only hub administrators see it (the data service runs under the hub: ``insitu up``).
The figures come from the platform's usage log (``insitu.access.usage``).
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from insitu.access.deps import CurrentPrincipal, CurrentServices, Principal, Services
from insitu.access.routes.web import PageRoute, render
from insitu.access.usage import DailyUsage, UsageLog
from insitu.errors import Forbidden, InvalidRequest, Unauthorized

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
_MAX_DAYS = 366


def _admin_only(principal: Principal) -> None:
    if principal.hub_user is None:
        raise Unauthorized("The usage page is for hub administrators: log in through the hub.")
    if not principal.hub_admin:
        raise Forbidden(
            f"{principal.hub_user.name} is not a hub administrator; the usage page is "
            "for operators ('insitu user add NAME --admin')."
        )


def _since(days: int) -> date:
    if not 1 <= days <= _MAX_DAYS:
        raise InvalidRequest(f"days={days} is out of range: use 1 to {_MAX_DAYS}.")
    return datetime.now(UTC).date() - timedelta(days=days - 1)


def _log(services: Services) -> UsageLog:
    return UsageLog(services.settings.data_dir / "hub" / "usage.db")


@router.get("/admin/usage", response_class=HTMLResponse)
async def usage_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal, days: int = 30
) -> Response:
    """Core-hours per user and day: who used what, servers and Dask clusters apart."""
    _admin_only(principal)
    rows = await run_in_threadpool(_log(services).daily, _since(days))
    per_user: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        per_user[row.user][row.kind] += row.core_hours
    totals = sorted(
        ((user, dict(kinds), sum(kinds.values())) for user, kinds in per_user.items()),
        key=lambda t: -t[2],
    )
    return render(
        request,
        "usage.html",
        principal=principal,
        days=days,
        rows=rows,
        totals=totals,
    )


@router.get("/admin/usage.csv")
async def usage_csv(
    services: CurrentServices, principal: CurrentPrincipal, days: int = 30
) -> Response:
    """The same figures as CSV: day,user,kind,core_hours."""
    _admin_only(principal)
    text = await run_in_threadpool(_log(services).csv, _since(days))
    return Response(
        text,
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="insitu-usage-{days}d.csv"'},
    )


def _plot(rows: list[DailyUsage], days: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    users = sorted({r.user for r in rows})
    day_list = sorted({r.day for r in rows})
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    bottom = [0.0] * len(day_list)
    for user in users:
        values = [
            sum(r.core_hours for r in rows if r.user == user and r.day == d) for d in day_list
        ]
        ax.bar([d.isoformat() for d in day_list], values, bottom=bottom, label=user)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("core-hours")
    ax.set_title(f"Core-hours per day, last {days} days")
    if users:
        ax.legend(fontsize="small", ncols=min(4, len(users)))
    ax.tick_params(axis="x", labelrotation=45, labelsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@router.get("/admin/usage.png")
async def usage_png(
    services: CurrentServices, principal: CurrentPrincipal, days: int = 30
) -> Response:
    """A stacked bar chart of core-hours per day and user."""
    _admin_only(principal)
    rows = await run_in_threadpool(_log(services).daily, _since(days))
    png = await run_in_threadpool(_plot, rows, days)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})
