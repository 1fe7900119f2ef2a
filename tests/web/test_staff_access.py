"""Where staff reach the admin app: the served WSGI app as `schoolgate web` builds it (the
network guard, reverse-proxy headers, Secure cookies), on a real SQLite store.

The DSL signs in and approves from the staff network; a pupils' network gets 403 for every
admin page but still reaches the device API; a deployment reached over plain HTTP says so on
the sign-in page instead of failing with a CSRF message; the block page's choices survive
sign-in into the new-request form.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from werkzeug.test import Client, TestResponse

from proxy_addons.core.policy.load import PolicyError, load_policy
from proxy_addons.core.unblocks import AudienceKind, Scope, Status
from proxy_addons.gateway.addons.portal import web_app_request
from proxy_addons.store import DB_FILE, Store, store_url
from proxy_addons.web.app import create_app, create_device_api
from proxy_addons.web.errors import PLAIN_HTTP
from proxy_addons.web.serving import PolicyFile, served_app
from proxy_addons.workflow.unblocks import UnblockWorkflow
from tests.conftest import copy_policy
from tests.devices.test_device_tunnels import TUNNEL
from tests.devices.test_device_watch import watched_policy
from tests.web.test_webapp import PASSWORD, SECRET, seed

NETWORK = (
    "network:\n"
    "  client_networks: [10.10.0.0/16, 10.20.0.0/24]\n"
    "  management_networks: [10.99.0.0/24]\n"
    "  staff_networks: [10.20.0.0/24]\n"
)
DSL_LAPTOP, PUPIL_PC, IT_DESK = "10.20.0.31", "10.10.3.7", "10.99.0.5"
HOST = "gateway.oakfield.local"
SCOPE_OF_BLOCK_PAGE = "domain"


@pytest.fixture(scope="module")
def accounts_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed(tmp_path_factory.mktemp("accounts"))


class Served:
    """`served_app` over a real store; each browser is a werkzeug Client from one address."""

    def __init__(self, tmp: Path, db: Path, *, trusted_proxies: int = 0) -> None:
        var = tmp / "var"
        var.mkdir()
        shutil.copy(db, var / DB_FILE)
        policy_path = copy_policy(tmp)
        policy_path.write_text(policy_path.read_text() + NETWORK)
        self.policy = PolicyFile(policy_path)
        self.store = Store.open(store_url(var))
        self.workflow = UnblockWorkflow(self.store, self.policy, send_in_background=False)
        admin = create_app(self.workflow, self.store, secret_key=SECRET)  # Secure cookies
        api = create_device_api(self.store, self.policy, var=var)
        self.app = served_app(admin, api, self.policy, trusted_proxies)

    def browser(self, address: str, scheme: str = "https") -> Browser:
        return Browser(Client(self.app), address, f"{scheme}://{HOST}")


@dataclass
class Browser:
    """A browser at one address: werkzeug's client, its cookies kept between requests."""

    client: Client
    address: str
    base_url: str


def get(browser: Browser, path: str, headers: dict[str, str] | None = None) -> TestResponse:
    return browser.client.get(
        path,
        base_url=browser.base_url,
        environ_base={"REMOTE_ADDR": browser.address},
        headers=headers or {},
    )


def post(
    browser: Browser, path: str, data: dict[str, str], headers: dict[str, str] | None = None
) -> TestResponse:
    return browser.client.post(
        path,
        base_url=browser.base_url,
        environ_base={"REMOTE_ADDR": browser.address},
        data=data,
        headers=headers or {},
    )


def token(answer: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', answer.get_data(as_text=True))
    assert found, answer.get_data(as_text=True)[:500]
    return found.group(1)


def sign_in(client: Browser, name: str, next_page: str | None = None) -> TestResponse:
    form = get(client, "/login" + (f"?next={next_page}" if next_page else ""))
    data = {"username": name, "password": PASSWORD, "csrf_token": token(form)}
    if next_page:
        data["next"] = next_page
    return post(client, "/login", data=data)


@pytest.fixture
def served(tmp_path: Path, accounts_db: Path) -> Iterator[Served]:
    result = Served(tmp_path, accounts_db)
    yield result
    result.store.dispose()


def test_the_dsl_signs_in_and_approves_from_the_staff_network(served: Served) -> None:
    teacher = served.browser(DSL_LAPTOP.replace("31", "40"))
    assert sign_in(teacher, "teacher").status_code == 303
    new = get(teacher, "/unblocks/new")
    fields = {
        "url": "https://video.example.com/watch/lesson-3",
        "scope": "",
        "audience_kind": "users",
        "audience": "pupil",
        "minutes": "45",
        "until": "",
        "reason": "Year 6 science video",
        "csrf_token": token(new),
    }
    sent = post(teacher, "/unblocks/new", data=fields)
    assert sent.status_code == 303, sent.get_data(as_text=True)
    unblock_id = sent.headers["Location"].rsplit("/", 1)[-1]

    dsl = served.browser(DSL_LAPTOP)
    signed = sign_in(dsl, "dsl")
    assert signed.status_code == 303
    session = [
        c for c in signed.headers.getlist("Set-Cookie") if c.startswith("__Host-schoolgate=")
    ]
    assert session and "Secure" in session[0]
    detail = get(dsl, f"/unblocks/{unblock_id}")
    approved = post(
        dsl,
        f"/unblocks/{unblock_id}/approve",
        data={"csrf_token": token(detail), "comment": "Checked: fine."},
    )
    assert approved.status_code == 303, approved.get_data(as_text=True)
    assert served.workflow.get(unblock_id).status is Status.ACTIVE
    # The IT provider's desk on the management network reaches it too.
    assert get(served.browser(IT_DESK), "/login").status_code == 200


def test_a_pupils_network_gets_403_for_admin_pages_but_reaches_the_device_api(
    served: Served,
) -> None:
    pupil = served.browser(PUPIL_PC)
    for path in ("/", "/login", "/unblocks", "/unblocks/new", "/alerts", "/devices"):
        answer = get(pupil, path)
        assert answer.status_code == 403, path
        assert "staff and management networks" in answer.get_data(as_text=True)
    refused = post(pupil, "/login", data={"username": "dsl", "password": PASSWORD})
    assert refused.status_code == 403
    # A pupil's laptop reports to the device API from the pupils' network: not the guard's.
    api = get(pupil, "/api/v1/checks")
    assert "staff and management networks" not in api.get_data(as_text=True)
    # An address outside every network the policy names is refused too.
    assert get(served.browser("192.168.7.7"), "/login").status_code == 403


def test_plain_http_says_so_instead_of_a_csrf_message(served: Served) -> None:
    browser = served.browser(DSL_LAPTOP, scheme="http")
    form = get(browser, "/login")
    assert form.status_code == 200
    assert "reached over plain HTTP" in form.get_data(as_text=True)
    # The browser drops the Secure cookie set over http://: the post arrives without it.
    browser.client._cookies.clear()
    answer = post(
        browser,
        "/login",
        data={"username": "dsl", "password": PASSWORD, "csrf_token": token(form)},
    )
    assert answer.status_code == 400
    said = answer.get_data(as_text=True)
    assert "reached over plain HTTP" in said and "X-Forwarded-Proto: https" in said
    assert "did not come from this site" not in said
    assert PLAIN_HTTP.startswith("This page was reached over plain HTTP")
    # Over HTTPS the sign-in page has no such warning.
    assert "plain HTTP" not in get(served.browser(DSL_LAPTOP), "/login").get_data(as_text=True)


def test_behind_a_trusted_https_proxy_sign_in_works(tmp_path: Path, accounts_db: Path) -> None:
    served = Served(tmp_path, accounts_db, trusted_proxies=1)
    try:
        proxy = served.browser("127.0.0.1", scheme="http")
        headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": DSL_LAPTOP}
        form = get(proxy, "/login", headers=headers)
        assert "plain HTTP" not in form.get_data(as_text=True)
        data = {"username": "dsl", "password": PASSWORD, "csrf_token": token(form)}
        assert post(proxy, "/login", data=data, headers=headers).status_code == 303
        # The proxy forgets X-Forwarded-Proto: the page explains.
        plain = get(proxy, "/login", headers={"X-Forwarded-For": DSL_LAPTOP})
        assert "reached over plain HTTP" in plain.get_data(as_text=True)
        # A pupil's address forwarded by the proxy is a pupil's.
        pupil = get(proxy, "/login", headers={**headers, "X-Forwarded-For": PUPIL_PC})
        assert pupil.status_code == 403
    finally:
        served.store.dispose()


def test_the_block_pages_choice_survives_sign_in(served: Served) -> None:
    chosen = {
        "url": "https://video.example.com/watch/lesson-3",
        "scope": SCOPE_OF_BLOCK_PAGE,
        "audience": "profile:staff",
        "minutes": "50",
        "reason": "Year 6: the water cycle",
    }
    target = web_app_request(f"https://{HOST}:8081", chosen)
    parts = urlsplit(target)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", f"{HOST}:8081", "/unblocks/new")
    path = f"{parts.path}?{parts.query}"
    teacher = served.browser(DSL_LAPTOP)
    sent_to_sign_in = get(teacher, path)
    assert sent_to_sign_in.status_code == 302
    login = sent_to_sign_in.headers["Location"]
    next_page = parse_qs(urlsplit(login).query)["next"][0]
    assert next_page == path
    signed = sign_in(teacher, "teacher", next_page)
    assert signed.status_code == 303 and signed.headers["Location"] == path
    html = get(teacher, path).get_data(as_text=True)
    assert 'value="https://video.example.com/watch/lesson-3"' in html
    assert '<option value="domain" selected>' in html
    assert '<option value="profile" selected>' in html
    assert 'value="staff"' in html and 'value="50"' in html
    assert "Year 6: the water cycle" in html
    # "Only me": the form names whoever signed in.
    mine = web_app_request(f"https://{HOST}:8081", {**chosen, "audience": "me"})
    only_me = urlsplit(mine)
    html = get(teacher, f"{only_me.path}?{only_me.query}").get_data(as_text=True)
    assert '<option value="user" selected>' in html and 'value="teacher"' in html
    assert AudienceKind("user") and Scope(SCOPE_OF_BLOCK_PAGE)


def test_a_next_elsewhere_is_not_followed(served: Served) -> None:
    teacher = served.browser(DSL_LAPTOP)
    for elsewhere in ("https://evil.example/x", "//evil.example/x", "/\\evil.example"):
        signed = sign_in(teacher, "teacher", elsewhere)
        assert signed.status_code == 303 and "evil" not in signed.headers["Location"]


def test_a_staff_network_holding_a_pupils_network_is_refused(tmp_path: Path) -> None:
    policy = copy_policy(tmp_path)
    policy.write_text(
        policy.read_text() + "network:\n  client_networks: [10.10.0.0/16, 10.20.0.0/24]\n"
        "  staff_networks: [10.0.0.0/8]\n"
    )
    with pytest.raises(PolicyError, match="staff network 10.0.0.0/8 holds the client network"):
        load_policy(policy)


def test_the_example_policy_lets_staff_laptops_in() -> None:
    example = load_policy(Path(__file__).resolve().parents[2] / "policies" / "school.yaml")
    assert [str(n) for n in example.network.staff_networks] == ["10.20.0.0/24"]
    assert example.unblocks.web_url.startswith("https://")


def test_a_staff_network_holding_the_tunnel_pool_is_refused(tmp_path: Path) -> None:
    """Pupils' laptops at home come in through the tunnel pool: a staff network around it
    would open the admin app to them."""
    path = watched_policy(tmp_path)
    networks = "network:\n  client_networks: [10.20.0.0/16]\n  staff_networks: [{}]\n"
    path.write_text(path.read_text() + TUNNEL + networks.format("10.20.5.0/24"))
    assert load_policy(path).network.staff_networks
    path.write_text(path.read_text().rsplit("network:", 1)[0] + networks.format("10.123.0.0/16"))
    with pytest.raises(PolicyError, match=r"pool 10\.123\.0\.0/29 is inside the staff network"):
        load_policy(path)
