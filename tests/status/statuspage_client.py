"""A small Statuspage-format consumer, written against Statuspage's published public API v2
(the shapes of /api/v2/summary.json and /api/v2/status.json that status widgets read).

It reads a page the way a widget does (overall indicator and description, components grouped by
status, unresolved incidents with their latest update), validates every field it relies on
(presence, type, enum values, RFC 3339 times, ids that point where they should) and prints one
JSON object with what it read and every problem found:

    python statuspage_client.py http://127.0.0.1:8080

Exit status 0 when it could read the page (problems are in "errors"), 2 when it could not.
"""

import json
import re
import sys
import urllib.request
from datetime import datetime

INDICATORS = {"none", "minor", "major", "critical"}
COMPONENT_STATUSES = {
    "operational",
    "degraded_performance",
    "partial_outage",
    "major_outage",
    "under_maintenance",
}
INCIDENT_STATUSES = {"investigating", "identified", "monitoring", "resolved", "postmortem"}
IMPACTS = {"none", "minor", "major", "critical", "maintenance"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")

errors = []


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        if r.headers.get("Access-Control-Allow-Origin") != "*":
            errors.append(f"{url}: no Access-Control-Allow-Origin: * (widgets read cross-origin)")
        ctype = r.headers.get("Content-Type", "")
        if not ctype.startswith("application/json"):
            errors.append(f"{url}: Content-Type {ctype!r}")
        return json.load(r)


def field(obj, key, types, where, enum=None, nullable=False):
    if not isinstance(obj, dict) or key not in obj:
        errors.append(f"{where}: missing {key}")
        return None
    v = obj[key]
    if v is None:
        if not nullable:
            errors.append(f"{where}.{key}: null")
        return None
    if not isinstance(v, types) or (types is int and isinstance(v, bool)):
        errors.append(f"{where}.{key}: {type(v).__name__}, not {types}")
        return None
    if enum is not None and v not in enum:
        errors.append(f"{where}.{key}: {v!r} not one of {sorted(enum)}")
    return v


def time_field(obj, key, where, nullable=False):
    v = field(obj, key, str, where, nullable=nullable)
    if v is None:
        return None
    if not TIME.match(v):
        errors.append(f"{where}.{key}: {v!r} is not an RFC 3339 time")
        return None
    return datetime.fromisoformat(v.replace("Z", "+00:00"))


def read_page(p, where):
    field(p, "id", str, where)
    field(p, "name", str, where)
    field(p, "url", str, where, nullable=True)
    field(p, "time_zone", str, where)
    time_field(p, "updated_at", where)


def read_component(c, where, page_id):
    field(c, "id", str, where)
    field(c, "name", str, where)
    field(c, "status", str, where, COMPONENT_STATUSES)
    time_field(c, "created_at", where)
    time_field(c, "updated_at", where)
    field(c, "position", int, where)
    field(c, "description", str, where, nullable=True)
    field(c, "showcase", bool, where)
    start = field(c, "start_date", str, where, nullable=True)
    if start is not None and not DATE.match(start):
        errors.append(f"{where}.start_date: {start!r}")
    field(c, "group_id", str, where, nullable=True)
    field(c, "group", bool, where)
    field(c, "only_show_if_degraded", bool, where)
    if field(c, "page_id", str, where) != page_id:
        errors.append(f"{where}.page_id does not name the page")


def read_incident(i, where, page_id):
    iid = field(i, "id", str, where)
    field(i, "name", str, where)
    status = field(i, "status", str, where, INCIDENT_STATUSES)
    field(i, "impact", str, where, IMPACTS)
    for k in ("created_at", "updated_at", "started_at"):
        time_field(i, k, where)
    time_field(i, "monitoring_at", where, nullable=True)
    resolved = time_field(i, "resolved_at", where, nullable=True)
    if status == "resolved" and resolved is None:
        errors.append(f"{where}: resolved without resolved_at")
    if status != "resolved" and resolved is not None:
        errors.append(f"{where}: unresolved with resolved_at")
    field(i, "shortlink", str, where, nullable=True)
    if field(i, "page_id", str, where) != page_id:
        errors.append(f"{where}.page_id does not name the page")
    for n, c in enumerate(field(i, "components", list, where) or []):
        read_component(c, f"{where}.components[{n}]", page_id)
    updates = field(i, "incident_updates", list, where) or []
    if not updates:
        errors.append(f"{where}: no incident_updates")
    shown = []
    for n, u in enumerate(updates):
        w = f"{where}.incident_updates[{n}]"
        field(u, "id", str, w)
        field(u, "status", str, w, INCIDENT_STATUSES)
        field(u, "body", str, w)
        if field(u, "incident_id", str, w) != iid:
            errors.append(f"{w}.incident_id does not name its incident")
        time_field(u, "created_at", w)
        time_field(u, "updated_at", w)
        shown.append(time_field(u, "display_at", w))
        field(u, "affected_components", list, w, nullable=True)
    if all(shown) and shown != sorted(shown, reverse=True):
        errors.append(f"{where}: incident_updates are not newest first")
    if updates and updates[0].get("status") != status:
        errors.append(f"{where}: the latest update's status is not the incident's")
    latest = updates[0] if updates else {}
    return {
        "name": i.get("name"),
        "impact": i.get("impact"),
        "status": status,
        "latest_update": latest.get("body"),
        "latest_update_at": latest.get("display_at"),
        "components": [c.get("name") for c in i.get("components") or []],
    }


def main(base):
    base = base.rstrip("/")
    try:
        summary = fetch(f"{base}/api/v2/summary.json")
        status = fetch(f"{base}/api/v2/status.json")
    except Exception as e:  # noqa: BLE001 - any failure to read is the answer
        print(json.dumps({"unreadable": str(e)}))
        return 2
    for key in ("page", "status", "components", "incidents", "scheduled_maintenances"):
        if key not in summary:
            errors.append(f"summary: missing {key}")
    read_page(summary.get("page"), "summary.page")
    read_page(status.get("page"), "status.page")
    page_id = (summary.get("page") or {}).get("id")
    indicator = field(summary.get("status"), "indicator", str, "summary.status", INDICATORS)
    description = field(summary.get("status"), "description", str, "summary.status")
    if status.get("status") != summary.get("status"):
        errors.append("status.json and summary.json disagree on status")
    by_status = {}
    components = field(summary, "components", list, "summary") or []
    for n, c in enumerate(components):
        read_component(c, f"summary.components[{n}]", page_id)
        by_status.setdefault(c.get("status"), []).append(c.get("name"))
    if [c.get("position") for c in components] != sorted(c.get("position") for c in components):
        errors.append("components are not in position order")
    incidents = []
    for n, i in enumerate(field(summary, "incidents", list, "summary") or []):
        seen = read_incident(i, f"summary.incidents[{n}]", page_id)
        if seen["status"] == "resolved":
            errors.append(f"summary.incidents[{n}]: resolved incident in the unresolved list")
        incidents.append(seen)
    field(summary, "scheduled_maintenances", list, "summary")
    print(
        json.dumps(
            {
                "page": (summary.get("page") or {}).get("name"),
                "indicator": indicator,
                "description": description,
                "components": by_status,
                "incidents": incidents,
                "errors": errors,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
