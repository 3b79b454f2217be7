"""There is always an active admin to undo a mistake (docs/protocol.md "Administration and registry endpoints"):
an admin cannot deactivate themself, and the last active admin can be neither deactivated nor stripped of the
role. Each refusal is 409 with a reason, and nothing changes.
"""

from __future__ import annotations

import threading

from backend.core.models import Officer

CITY = "330100"


def make_admin(officers, **kw):
    return officers.make(region=CITY, roles=("officer", "admin"), **kw)


def active_admins(db) -> set[str]:
    with db.session() as s:
        return {o.id for o in s.query(Officer).filter(Officer.active.is_(True)) if o.has_role("admin")}


def test_given_an_admin_when_they_deactivate_themself_then_409_and_they_stay_active(client, officers, db):
    admin, other = make_admin(officers), make_admin(officers)
    headers = officers.headers(admin)
    r = client.post(f"/api/v1/officers/{admin.id}/deactivate", headers=headers)
    assert r.status_code == 409 and r.json["errors"] == {"active": ["an admin cannot deactivate themself"]}
    r = client.patch(f"/api/v1/officers/{admin.id}", json={"active": False}, headers=headers)
    assert r.status_code == 409
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    assert active_admins(db) == {admin.id, other.id}


def test_given_the_last_active_admin_when_they_drop_their_admin_role_then_409_and_nothing_changes(
        client, officers, db):
    admin = make_admin(officers, username="last.admin")
    headers = officers.headers(admin)
    r = client.patch(f"/api/v1/officers/{admin.id}", json={"roles": ["officer"], "name": "改名"}, headers=headers)
    assert r.status_code == 409
    assert r.json["message"].startswith("last.admin is the last active admin")
    assert r.json["errors"] == {"roles": ["the last active admin"]}
    me = client.get("/api/v1/me", headers=headers).json
    assert me["roles"] == ["officer", "admin"] and me["name"] != "改名"


def test_given_two_admins_then_one_may_remove_the_other_but_not_the_last(client, officers, db):
    first, second = make_admin(officers), make_admin(officers)
    headers = officers.headers(first)
    r = client.patch(f"/api/v1/officers/{second.id}", json={"roles": ["officer"]}, headers=headers)
    assert r.status_code == 200 and r.json["roles"] == ["officer"]
    assert client.patch(f"/api/v1/officers/{first.id}", json={"roles": ["reviewer"]},
                        headers=headers).status_code == 409
    r = client.patch(f"/api/v1/officers/{second.id}", json={"roles": ["officer", "admin"]}, headers=headers)
    assert r.status_code == 200
    assert client.post(f"/api/v1/officers/{second.id}/deactivate", headers=headers).status_code == 200
    assert active_admins(db) == {first.id}
    # An inactive admin is no admin to fall back on: the last active one still cannot step down.
    assert client.patch(f"/api/v1/officers/{first.id}", json={"roles": ["officer"]},
                        headers=headers).status_code == 409


def test_given_an_admin_when_they_drop_their_own_role_while_another_admin_remains_then_it_is_allowed(
        client, officers, db):
    first, second = make_admin(officers), make_admin(officers)
    r = client.patch(f"/api/v1/officers/{first.id}", json={"roles": ["reviewer"]}, headers=officers.headers(first))
    assert r.status_code == 200 and active_admins(db) == {second.id}


def test_given_two_admins_deactivating_each_other_at_once_then_one_admin_stays_active(app, officers, db):
    first, second = make_admin(officers), make_admin(officers)
    calls = [(first, second), (second, first)]
    headers = {o.id: officers.headers(o) for o in (first, second)}
    barrier, statuses = threading.Barrier(2), []

    def deactivate(caller, target):
        barrier.wait(timeout=30)
        r = app.test_client().post(f"/api/v1/officers/{target.id}/deactivate", headers=headers[caller.id])
        statuses.append(r.status_code)

    threads = [threading.Thread(target=deactivate, args=pair) for pair in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    # One wins; the other is refused (409, or 401 once its caller was deactivated, or 503 where SQLite was busy).
    assert sorted(statuses)[0] == 200 and set(statuses) <= {200, 401, 409, 503}, statuses
    assert len(active_admins(db)) == 1
