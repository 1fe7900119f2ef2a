"""A real OpenLDAP server for the tests: Debian's `slapd`, as the test's own process.

`start_slapd(folder)` writes a slapd.conf (mdb backend, suffix dc=school,dc=test,
the memberof overlay), starts `slapd` in the foreground on a free loopback port,
waits until it answers, and loads the people and groups below with `ldapadd`
(through the server, so the overlay fills in `memberOf`). The stats log goes to
`folder/slapd.log`, so tests can count the searches the server really saw.

Without `/usr/sbin/slapd` or `ldapadd` the tests skip, saying how to install them.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SLAPD = "/usr/sbin/slapd"
SKIP = "OpenLDAP is not installed (apt-get install slapd ldap-utils; .ci/run does)"
SUFFIX = "dc=school,dc=test"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PW = "admin-s3cret"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
PASSWORDS = {
    "mrs.patel": "patel-pw",
    "ks2pupil": "pupil-pw",
    "nobody": "nobody-pw",
    "mr.jones": "jones-pw",
}
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


def _user(uid: str) -> str:
    return f"""dn: uid={uid},{PEOPLE}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid}
sn: {uid}
userPassword: {PASSWORDS[uid]}
"""


# mrs.patel and ks2pupil are in groupOfNames groups (memberOf is filled in);
# mr.jones only in groups the overlay ignores (the member search finds them);
# nobody is in no group at all.
DIRECTORY = "\n".join(
    [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: school\no: Test\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        *(_user(uid) for uid in PASSWORDS),
        f"dn: cn=Staff,{GROUPS}\nobjectClass: groupOfNames\ncn: Staff\n"
        f"member: uid=mrs.patel,{PEOPLE}\n",
        f"dn: cn=KS2 Pupils,{GROUPS}\nobjectClass: groupOfNames\ncn: KS2 Pupils\n"
        f"member: uid=ks2pupil,{PEOPLE}\n",
        f"dn: cn=Technicians,{GROUPS}\nobjectClass: groupOfUniqueNames\ncn: Technicians\n"
        f"uniqueMember: uid=mr.jones,{PEOPLE}\n",
        f"dn: cn=ICT Club,{GROUPS}\nobjectClass: posixGroup\ncn: ICT Club\ngidNumber: 5001\n"
        "memberUid: mr.jones\n",
    ]
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Slapd:
    folder: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}/"

    @property
    def log(self) -> Path:
        return self.folder / "slapd.log"

    def spec(self, *, bind_pw: str = ROOT_PW, port: int | None = None) -> str:
        """The mitmproxy proxyauth spec for this server, users found by uid."""
        return (
            f"ldap:127.0.0.1:{port or self.port}:{ROOT_DN}:{bind_pw}:{PEOPLE}?search_filter_key=uid"
        )

    def searches(self) -> int:
        """How many searches the server has answered (from its stats log)."""
        return len(re.findall(r" SRCH base=", self.log.read_text(errors="replace")))

    def start(self, timeout: float = 10) -> None:
        """Start (or restart, with the same data and port) and wait until it answers."""
        conf = self.folder / "slapd.conf"
        if not conf.exists():
            self._write_conf(conf)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [SLAPD, "-h", self.url, "-f", str(conf), "-d", "stats"],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"slapd exited ({self.process.returncode}); an AppArmor profile for "
                    f"{SLAPD} may keep it out of {self.folder}:\n{self.log.read_text()}"
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not listen on {self.port}:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def load(self, ldif: str) -> None:
        path = self.folder / "directory.ldif"
        path.write_text(ldif)
        cmd = ["ldapadd", "-x", "-H", self.url, "-D", ROOT_DN, "-w", ROOT_PW, "-f", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"ldapadd failed: {done.stderr}")

    def _write_conf(self, conf: Path) -> None:
        db = self.folder / "db"
        db.mkdir(exist_ok=True)
        modules = ["back_mdb"]
        if Path("/usr/lib/ldap/memberof.so").exists():
            modules.append("memberof")
        lines = [
            *(f"include /etc/ldap/schema/{name}.schema" for name in SCHEMAS),
            "modulepath /usr/lib/ldap",
            *(f"moduleload {m}" for m in modules),
            f"pidfile {self.folder / 'slapd.pid'}",
            f"argsfile {self.folder / 'slapd.args'}",
            "database mdb",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {db}",
            "maxsize 10485760",
            *(["overlay memberof"] if "memberof" in modules else []),
        ]
        conf.write_text("\n".join(lines) + "\n")


def start_slapd(folder: Path) -> Slapd:
    """A running slapd holding DIRECTORY; skips the test if OpenLDAP is not installed."""
    if not Path(SLAPD).exists() or shutil.which("ldapadd") is None:
        pytest.skip(SKIP)
    folder.mkdir(parents=True, exist_ok=True)
    server = Slapd(folder)
    server.start()
    try:
        server.load(DIRECTORY)
    except Exception:
        server.stop()
        raise
    return server
