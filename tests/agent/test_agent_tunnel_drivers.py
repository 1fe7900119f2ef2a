"""The tunnel drivers on the commands they run and the output those commands print.

NOT run on macOS or Windows here: the macOS and Windows drivers are checked against the
argv they would run and output as those systems' tools print it (Homebrew's wg-quick and
`route -n get default`; wireguard.exe's tunnel service and `sc query`). Only the Linux
driver has been run for real (tests/agent/test_agent_tunnel_netns.py and the lead's
end-to-end test).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.runner import NOT_FOUND, CommandResult
from agent.tunnel.drivers import (
    WINDOWS_WG,
    WINDOWS_WIREGUARD,
    LinuxDriver,
    MacDriver,
    WindowsDriver,
    driver_for,
    parse_handshakes,
)
from agent.tunnel.firewall import KillSwitch, Openings, PfFirewall
from agent.tunnel.location import Bypass

KEY = "Mpdw1NJKMaLQtN5mSq5VHngtunE2VX+JnOx0p9rsqTw="

ROUTE_GET_DEFAULT = """   route to: default
destination: default
       mask: default
    gateway: 192.168.1.254
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING,GLOBAL>
 recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire
       0         0         0         0         0         0      1500         0
"""

SC_RUNNING = r"""
SERVICE_NAME: WireGuardTunnel$schoolgate0
        TYPE               : 10  WIN32_OWN_PROCESS
        STATE              : 4  RUNNING
                                (STOPPABLE, NOT_PAUSABLE, ACCEPTS_SHUTDOWN)
        WIN32_EXIT_CODE    : 0  (0x0)
        SERVICE_EXIT_CODE  : 0  (0x0)
        CHECKPOINT         : 0x0
        WAIT_HINT          : 0x0
"""

SC_MISSING = """[SC] EnumQueryServicesStatus:OpenService FAILED 1060:

The specified service does not exist as an installed service.
"""


class Recorded:
    """Prints what a command printed on a real system; records what was run."""

    def __init__(self, outputs: dict[str, CommandResult], files: dict[str, str] | None = None):
        self.outputs, self.files = outputs, files or {}
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], timeout: float = 20.0) -> CommandResult:
        self.calls.append(argv)
        return self.outputs.get(" ".join(argv), CommandResult(NOT_FOUND, "", "not found"))

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def listdir(self, path: str) -> list[str] | None:
        return None


def ok(stdout: str = "") -> CommandResult:
    return CommandResult(0, stdout, "")


def test_latest_handshakes_output() -> None:
    assert parse_handshakes(f"{KEY}\t0\n") is None  # never
    assert parse_handshakes(f"{KEY}\t1796634000\n") == datetime.fromtimestamp(1796634000, UTC)
    assert parse_handshakes("") is None


def test_linux_runs_wg_quick_on_the_file_and_wg_show_for_health() -> None:
    runner = Recorded({"wg show sg0 latest-handshakes": ok(f"{KEY}\t1796634000\n")})
    driver = LinuxDriver(runner, "sg0")
    driver.up(Path("/var/lib/schoolgate-agent/sg0.conf"))
    driver.down(Path("/var/lib/schoolgate-agent/sg0.conf"))
    assert runner.calls == [
        ["wg-quick", "up", "/var/lib/schoolgate-agent/sg0.conf"],
        ["wg-quick", "down", "/var/lib/schoolgate-agent/sg0.conf"],
    ]
    assert driver.present() and driver.last_handshake() is not None
    assert driver.bypass() == Bypass("mark", 51820)


def test_macos_uses_homebrews_tools_and_binds_the_probe_to_the_physical_interface() -> None:
    runner = Recorded(
        {
            "route -n get default": ok(ROUTE_GET_DEFAULT),
            "/opt/homebrew/bin/wg show schoolgate0 latest-handshakes": ok(f"{KEY}\t1796634000\n"),
        }
    )
    brew = {"/opt/homebrew/bin/wg-quick", "/opt/homebrew/bin/wg"}
    driver = MacDriver(runner, which=lambda p: p if p in brew else None, if_index={"en0": 6}.get)  # type: ignore[arg-type]
    driver.up(Path("/Library/Application Support/Schoolgate/schoolgate0.conf"))
    assert runner.calls[0] == [
        "/opt/homebrew/bin/wg-quick",
        "up",
        "/Library/Application Support/Schoolgate/schoolgate0.conf",
    ]
    assert driver.present() and driver.bypass() == Bypass("bound_if", 6)


def test_macos_without_a_physical_default_route_cannot_probe_round_the_tunnel() -> None:
    runner = Recorded({"route -n get default": ok(ROUTE_GET_DEFAULT.replace("en0", "utun4"))})
    assert MacDriver(runner, which=lambda _: None).bypass() is None


def test_macos_pf_anchor_is_loaded_enabled_and_flushed() -> None:
    runner = Recorded(
        {
            "pfctl -a com.apple/schoolgate -s rules": ok("block return out quick all\n"),
        },
        {"/var/run/wireguard/schoolgate0.name": "utun4\n"},
    )
    runner.outputs["pfctl -E"] = ok("Token : 1234")
    firewall = PfFirewall(runner, Path("/tmp/not-used"), "schoolgate0")
    assert firewall._utun() == "utun4" and firewall.closed()
    assert firewall.open() is not None  # `pfctl -F rules` unrecorded here: said, not hidden
    assert runner.calls[-1] == ["pfctl", "-a", "com.apple/schoolgate", "-F", "rules"]


def test_windows_installs_the_tunnel_service_and_reads_its_state() -> None:
    runner = Recorded(
        {
            "sc query WireGuardTunnel$schoolgate0": ok(SC_RUNNING),
            f"{WINDOWS_WG} show schoolgate0 latest-handshakes": ok(f"{KEY}\t1796634000\n"),
        }
    )
    driver = WindowsDriver(runner)
    conf = Path(r"C:\ProgramData\Schoolgate\schoolgate0.conf")
    driver.up(conf)
    driver.down(conf)
    assert runner.calls[:2] == [
        [WINDOWS_WIREGUARD, "/installtunnelservice", str(conf)],
        [WINDOWS_WIREGUARD, "/uninstalltunnelservice", "schoolgate0"],
    ]
    assert driver.present() and driver.last_handshake() is not None
    assert driver.bypass() is None


def test_windows_kill_switch_is_reported_only_while_the_service_runs() -> None:
    running = KillSwitch(
        Recorded({"sc query WireGuardTunnel$schoolgate0": ok(SC_RUNNING)}), "schoolgate0"
    )
    assert running.closed() and running.close(Openings("schoolgate0", None)) is None
    missing = Recorded(
        {"sc query WireGuardTunnel$schoolgate0": CommandResult(1060, SC_MISSING, "")}
    )
    stopped = KillSwitch(missing, "schoolgate0")
    assert not stopped.closed()
    assert "only while its tunnel service runs" in str(stopped.close(Openings("schoolgate0", None)))


def test_each_platform_gets_its_driver() -> None:
    runner = Recorded({})
    assert isinstance(driver_for("linux", runner), LinuxDriver)
    assert isinstance(driver_for("macos", runner), MacDriver)
    assert isinstance(driver_for("windows", runner), WindowsDriver)
