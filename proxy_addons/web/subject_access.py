"""The console's subject-access page: the DSL downloads everything the gateway holds about
one person (workflow/subject_access.py), as JSON or a ZIP of JSON and CSVs.

For the safeguarding power only: the export names everything a pupil did. A reason is
required; every export is written to the audit trail (who, whose, when, why, from which
address) before the file is handed over, and the page lists the recent ones. Concerns about
staff are in it only for the headteacher, as everywhere in the console.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue

from proxy_addons.web.context import actor, page, policy, services
from proxy_addons.web.nav import needs, powers
from proxy_addons.workflow import subject_access
from proxy_addons.workflow.subject_access import ExportRefused, Subject

bp = Blueprint("subject_access", __name__)

REFUSAL = "Subject access exports are for the DSL and deputies only."
MIMETYPES = {"json": "application/json", "zip": "application/zip"}


def _list(text: str) -> tuple[str, ...]:
    """Ids or addresses typed with commas or spaces between them."""
    return tuple(part for part in re.split(r"[\s,]+", text.strip()) if part)[:20]


def _form(status: int = 200, error: str | None = None) -> ResponseReturnValue:
    return page(
        "web_subject_access.html",
        status,
        form=request.form,
        error=error,
        recent=subject_access.recent_exports(services().store),
        tz=policy().timezone,
    )


@bp.get("/subject-access")
@needs("safeguarding", refusal=REFUSAL)
def export_form() -> ResponseReturnValue:
    return _form()


@bp.post("/subject-access")
@needs("safeguarding", refusal=REFUSAL)
def export_download() -> ResponseReturnValue:
    form = request.form
    who = Subject(
        form.get("user", "")[:200],
        device_ids=_list(form.get("devices", "")),
        ips=_list(form.get("ips", "")),
    )
    fmt = "zip" if form.get("format") == "zip" else "json"
    by = actor()
    now = services().workflow.clock()
    try:
        document = subject_access.export(
            services().store,
            who,
            by=by.name,
            reason=form.get("reason", "")[:500],
            now=now,
            address=by.address,
            staff_concerns=powers().headteacher,
        )
    except ExportRefused as exc:
        return _form(400, f"Nothing was exported: {exc}.")
    body = subject_access.to_zip(document) if fmt == "zip" else subject_access.to_json(document)
    name = subject_access.file_name(who, now, fmt)
    return Response(
        body,
        mimetype=MIMETYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


__all__ = ["bp"]
