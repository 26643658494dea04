"""Binding console users to tenants: the command line, the users screen (a staff admin binds
anyone; an admin bound to tenants adds and manages users only within them), the last staff
admin kept, and the table the migration makes. What a bound user then sees on every screen is
the matrix's (test_scope_matrix.py)."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from console.jobs.models import Base
from console.web.auth.views import set_user
from console.web.scope import tenants_of

from .conftest import csrf_token, sign_in
from .test_users import error_on, user, user_id

PASSWORD = "bound password 1"


def _bound_admin(app, tenants=("acme",)):
    with app.app_context():
        set_user("abe", "admin", PASSWORD, tenants=list(tenants))
    client = app.test_client()
    assert sign_in(client, "abe", PASSWORD).status_code == 302
    client.csrf = csrf_token(client, "/users")
    return client


def _tenants(app, username: str) -> set[str]:
    with app.app_context():
        return set(tenants_of(user_id(app, username)))


def test_the_migration_makes_the_user_tenants_table_the_model_describes(service):
    def ours(obj, name, kind, reflected, compare_to):
        table = obj if kind == "table" else getattr(obj, "table", None)
        return table is not None and table.name in {"users", "user_tenants"}

    with service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": ours})
        assert compare_metadata(context, Base.metadata) == []


def test_create_user_binds_to_each_tenant_given_and_refuses_an_unknown_one(app, make_tenant):
    make_tenant("acme")
    make_tenant("globex")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "ava", "--role", "viewer", "--password",
                                 PASSWORD, "--tenant", "acme", "--tenant", "globex"])
    assert result.exit_code == 0, result.output
    assert "bound to acme, globex" in result.output
    assert _tenants(app, "ava") == {"acme", "globex"}

    # Updating without --tenant keeps the binding (it never silently makes a user staff).
    result = runner.invoke(args=["create-user", "ava", "--role", "operator", "--password",
                                 PASSWORD])
    assert result.exit_code == 0 and _tenants(app, "ava") == {"acme", "globex"}

    result = runner.invoke(args=["create-user", "eve", "--role", "viewer", "--password",
                                 PASSWORD, "--tenant", "nobody"])
    assert result.exit_code == 2
    assert "--tenant" in result.output and "there is no tenant 'nobody'" in result.output
    assert user(app, "eve") is None                       # nothing half-stored


def test_a_staff_admin_binds_a_user_on_its_row_and_makes_it_staff_again(app, client_as,
                                                                         make_tenant):
    make_tenant("acme")
    admin = client_as("admin")
    vic = user_id(app, "vic")
    response = admin.post(f"/users/{vic}/tenants", data={"csrf_token": admin.csrf,
                                                         "tenants": ["acme"]})
    assert response.status_code == 303
    page = admin.get("/users").get_data(as_text=True)
    assert "vic now sees only acme." in page and "sees only acme" in page
    assert _tenants(app, "vic") == {"acme"}

    response = admin.post(f"/users/{vic}/tenants", data={"csrf_token": admin.csrf})
    assert response.status_code == 303 and _tenants(app, "vic") == set()

    response = admin.post(f"/users/{vic}/tenants", data={"csrf_token": admin.csrf,
                                                         "tenants": ["nobody"]})
    assert response.status_code == 422 and _tenants(app, "vic") == set()
    assert "not a valid choice" in error_on(response.get_data(as_text=True), f"tenants-{vic}")


def test_the_last_staff_admin_cannot_be_bound_to_tenants(app, client_as, make_tenant):
    make_tenant("acme")
    admin = client_as("admin")
    ada = user_id(app, "ada")
    response = admin.post(f"/users/{ada}/tenants", data={"csrf_token": admin.csrf,
                                                         "tenants": ["acme"]})
    assert response.status_code == 422
    assert "no active admin would be left" in error_on(response.get_data(as_text=True),
                                                       f"tenants-{ada}")
    assert _tenants(app, "ada") == set()


def test_a_bound_admin_adds_users_only_within_its_tenants(app, users, make_tenant):
    make_tenant("acme", name="Acme Corp")
    make_tenant("globex", name="Globex Corp")
    abe = _bound_admin(app)
    page = abe.get("/users").get_data(as_text=True)
    assert '<th scope="row">abe' in page
    for staff in ("ada", "olga", "vic"):                   # staff users are not its to manage
        assert f'<th scope="row">{staff}' not in page
    assert "Acme Corp (acme)" in page and "Globex Corp" not in page

    base = {"csrf_token": abe.csrf, "role": "operator", "password": "long enough pw"}
    response = abe.post("/users", data={**base, "username": "staffer"})
    assert response.status_code == 422
    assert "Choose at least one of your tenants" in response.get_data(as_text=True)
    response = abe.post("/users", data={**base, "username": "spy", "tenants": ["globex"]})
    assert response.status_code == 422
    assert user(app, "staffer") is None and user(app, "spy") is None

    response = abe.post("/users", data={**base, "username": "member", "tenants": ["acme"]})
    assert response.status_code == 303 and _tenants(app, "member") == {"acme"}

    vic = user_id(app, "vic")                               # staff: a 404, as if absent
    response = abe.post(f"/users/{vic}/role", data={"csrf_token": abe.csrf, "role": "admin"})
    assert response.status_code == 404 and user(app, "vic").role == "viewer"


def test_a_bound_admin_reads_its_limits_but_cannot_change_them(app, users, make_tenant, service):
    make_tenant("acme", "tier2")
    abe = _bound_admin(app)
    page = abe.get("/tenants/acme").get_data(as_text=True)
    assert "max_queued_jobs" in page                        # the read-only table
    assert 'action="/tenants/acme/limits"' not in page      # no form
    response = abe.post("/tenants/acme/limits", data={"csrf_token": abe.csrf, "tier": "tier4"})
    assert response.status_code == 403
    assert "staff account" in response.get_data(as_text=True)
    assert service.tenants.get_tenant_config("acme").tier.value == "tier2"
