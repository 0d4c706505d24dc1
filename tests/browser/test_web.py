"""The member and station pages in a real browser (Debian's Chromium driven by Playwright) against the real stack.

The shipped ``mosquitto/mosquitto.conf`` is rendered onto free loopback ports with a test CA by the helpers of
``tests/integration/test_broker_security.py``, with a real InfluxDB, the real aggregator and a real edge node
playing a clip of the data set. The pages log in with the accounts ``formcheck broker users add`` made, so the
broker's ACL is what is tested.

Both ways the shipped file serves the pages are used: ``https://`` on the secure websockets listener, the origin
of the page's ``wss://`` (the docker compose deployment, whose eclipse-mosquitto image has a libwebsockets without
HTTP/2), and Debian's ``http://`` page listener whose page connects to ``wss://`` on the other port. Debian's
broker, which these tests run, offers HTTP/2 on its TLS listener and then cannot serve files over it, so Chromium
runs with ``--disable-http2``: it then negotiates HTTP/1.1, what it gets from the image's broker, which offers
nothing else (``test_broker_security`` checks the listener's offer and its HTTP/1.1 answers).

Chromium trusts the test server by its key only: ``--ignore-certificate-errors-spki-list`` with the SHA-256 of
the test server certificate's public key. Every other certificate is still verified, nothing is added to a
certificate store, and the pages are reached over real TLS (https:// and wss://).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from formcheck.local_services import Influxd, running_influxd
from formcheck_protocol.messages import Grade, NodeState, NodeStatus, RepMessage, SessionMessage, SetMessage
from formcheck_runtime.paths import REPO_ROOT
from tests.integration.test_broker_security import WEB_DIST, add_accounts, connect, make_ca, make_cert, start
from tests.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.broker, pytest.mark.data]

CHROMIUM = Path("/usr/bin/chromium")
AXE = REPO_ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = REPO_ROOT / "web" / "screenshots"  # gitignored; two of them are copied into docs/ for the README
DOC_SHOTS = {"member-set-phone.png": "web-member-phone.png", "station-tv.png": "web-station-tv.png"}
CLIP = "videos/squat/squat_front_bodyweight_a.mp4"  # 6 reps, 3 judged poor: the set says so in words (asserted)
NODE = "rack-1"
ACCOUNTS = {"desk": "staff", NODE: "node", "agg": "aggregator", "screen": "display", "watch": "display",
            "ci": "checkin", "alice": "member", "bob": "member"}
# The wall's stations (node accounts, so staff may write their sessions), its own display account (one connection
# per account) and a second aggregator account for the rep and set messages the aggregator would send.
WALL_NODES = ("rack-2", "rack-3", "rack-4", "rack-5")
ACCOUNTS |= {**dict.fromkeys(WALL_NODES, "node"), "wall": "display", "agg-2": "aggregator"}
PHONE = {"width": 390, "height": 844}
TV = {"width": 1920, "height": 1080}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "formcheck.cli", *args]


@dataclass
class Stack:
    web_port: int
    wss_port: int
    mqtt_port: int
    influxd: Influxd
    passwords: dict[str, str]
    secrets: Path
    spki: str

    def url(self, query: str = "") -> str:
        """The page on the origin of its MQTT (docker compose)."""
        return f"https://127.0.0.1:{self.wss_port}/index.html?site=main{query}"

    def debian_url(self, query: str = "") -> str:
        """The page from Debian's plain-HTTP page listener; its MQTT goes to the secure websockets port."""
        return f"http://127.0.0.1:{self.web_port}/index.html?site=main&wss={self.wss_port}{query}"


def spki_hash(cert: Path) -> str:
    pub = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"], capture_output=True, check=True)
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub.stdout, capture_output=True,
                         check=True)
    return base64.b64encode(hashlib.sha256(der.stdout).digest()).decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, data_dir: Path, pose_model: Path) -> Iterator[Stack]:
    if not (WEB_DIST / "index.html").is_file() or not AXE.is_file():
        pytest.fail("web/dist or web/node_modules missing: run 'make web'", pytrace=False)
    root = tmp_path_factory.mktemp("web")
    tls = root / "tls"
    make_ca(tls, "formcheck-ca")
    cert, _ = make_cert(tls, "formcheck-ca", "formcheck-server", server=True)
    passwords = add_accounts(root / "accounts", root / "secrets", ACCOUNTS)
    server, _ = start(root)
    env = {**os.environ, "FORMCHECK_AGG__MQTT__USERNAME": "agg", "FORMCHECK_AGG__MQTT__PASSWORD": passwords["agg"],
           "FORMCHECK_AGG__MQTT__KEEPALIVE_S": "5", "FORMCHECK_AGG__INFLUX__FLUSH_INTERVAL_S": "0.1"}
    try:
        with running_influxd() as influxd:
            agg = subprocess.Popen(cli("aggregator", "--broker", f"127.0.0.1:{server.port}", "--influx", influxd.url),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
            desk = subprocess.Popen(cli("checkin-service", "--broker", f"127.0.0.1:{server.port}", "--username", "ci",
                                        "--password-file", str(root / "secrets" / "ci.password")),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                yield Stack(server.extra_ports["web"], server.extra_ports["websockets"], server.port, influxd,
                            passwords, root / "secrets", spki_hash(cert))
            finally:
                for proc in (agg, desk):
                    proc.send_signal(signal.SIGTERM)
                _, err = agg.communicate(timeout=30)
                _, desk_err = desk.communicate(timeout=10)
            assert agg.returncode == 0 and "Traceback" not in err, err[-3000:]
            assert desk.returncode == 0 and "Traceback" not in desk_err, desk_err[-3000:]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    if not CHROMIUM.is_file() or shutil.which("pdftoppm") is None:
        pytest.fail("Debian's chromium or poppler-utils is missing: run 'make test-system-deps'", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM),
                                     args=[f"--ignore-certificate-errors-spki-list={stack.spki}", "--disable-http2"])
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, url: str, size: dict[str, int]) -> Any:
    page = browser.new_page(viewport=size)
    page.set_default_timeout(15_000)
    page.goto(url)
    return page


def sign_in(page: Any, name: str, password: str) -> None:
    page.fill("#username", name)
    page.fill("#password", password)
    page.click("#login-button")


def axe_serious(page: Any) -> list[str]:
    """Serious or critical axe-core violations on the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => (await axe.run(document)).violations"
                           ".map(v => ({id: v.id, impact: v.impact, help: v.help, n: v.nodes.length}))")
    return [f"{v['impact']}: {v['id']} ({v['help']}, {v['n']} nodes)" for v in result
            if v["impact"] in ("serious", "critical")]


def shot(page: Any, name: str, full_page: bool = False) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / name), full_page=full_page)


@dataclass
class RepTimes:
    """When each rep message reached a real MQTT client (a display account), wall clock in ms."""

    arrived: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def watch_reps(stack: Stack) -> tuple[mqtt.Client, RepTimes]:
    times = RepTimes()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watch", protocol=mqtt.MQTTv5)
    client.username_pw_set("watch", stack.passwords["watch"])
    subscribed = threading.Event()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        rep = json.loads(msg.payload)
        with times.lock:
            times.arrived[int(rep["rep_index"])] = time.time() * 1000

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_connect = lambda c, *a: c.subscribe(f"gym/main/nodes/{NODE}/reps", qos=1)
    client.connect("127.0.0.1", stack.mqtt_port, keepalive=10)
    client.loop_start()
    assert subscribed.wait(5), "rep watcher not subscribed"
    return client, times


@pytest.mark.parametrize("deployment", ["compose", "debian"])
def test_wrong_password_is_refused(browser: Any, stack: Stack, deployment: str) -> None:
    page = open_page(browser, stack.url() if deployment == "compose" else stack.debian_url(), PHONE)
    try:
        sign_in(page, "alice", "not-the-password")
        page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
        assert page.text_content("#login-error") == "Wrong name or password. Check them and try again."
        assert page.is_hidden("#member")
        assert axe_serious(page) == []
        shot(page, f"login-phone-{deployment}.png")
        # The right password on the same page: the refusal came from the broker over wss, not from a dead link.
        sign_in(page, "alice", stack.passwords["alice"])
        page.wait_for_selector("#member:not([hidden])")
        assert page.evaluate("location.protocol") == ("https:" if deployment == "compose" else "http:")
    finally:
        page.close()


def test_station_screen_shows_an_idle_station_as_idle(browser: Any, stack: Stack) -> None:
    """What the node says on its retained status topic (as its own account): idle, awake, its Last Will."""
    station = open_page(browser, stack.url(f"&view=station&station={NODE}"), TV)
    node = connect(stack.mqtt_port, NODE, stack.passwords[NODE])
    topic = f"gym/main/nodes/{NODE}/status"

    def says(state: NodeState, **fields: Any) -> None:
        status = NodeStatus(state=state, node=NODE, boot="b-idle", ts=int(time.time() * 1000), **fields)
        assert node.publish(topic, status.to_json(), retain=True) == "Success"

    def shows(words: str) -> None:
        station.wait_for_function(f"document.getElementById('st-state').textContent === {json.dumps(words)}")

    try:
        sign_in(station, "screen", stack.passwords["screen"])
        station.wait_for_selector("#station:not([hidden])")
        says("online", activity="idle")
        shows("Idle: nobody in view")
        assert station.eval_on_selector("#st-state", "e => e.className") == "st-state idle"
        assert axe_serious(station) == []
        shot(station, "station-idle-tv.png")
        says("online")  # a person stepped in: the node is back at full rate (no activity field: active)
        shows("Waiting for check-in")
        says("online", activity="idle", source_ok=False)  # a lost camera is offline, idle or not
        shows("Camera offline")
        says("offline")
        shows("Camera offline")
    finally:
        node.publish(topic, b"", retain=True)  # the next test's station starts without a retained status
        node.close()
        station.close()


def wall_rep(node: str, member: str, index: int, grade: Grade) -> RepMessage:
    """A rep as the aggregator publishes it on the station's reps topic."""
    t0 = int(time.time() * 1000) - 60_000 + index * 3000
    return RepMessage(node=node, member=member, exercise="squat", set_id=f"{node}-b0-1", rep_index=index,
                      start_ts=t0, bottom_ts=t0 + 1000, end_ts=t0 + 2000, start_seq=index * 90,
                      bottom_seq=index * 90 + 30, end_seq=index * 90 + 60, descent_s=1.0, ascent_s=1.0, depth=0.1,
                      bad_ratio=0.0, score=90.0, grade=grade, verdict="good")


def tile_text(page: Any, node: str) -> str:
    return str(page.text_content(f"article[data-station='{node}']"))


def test_wall_shows_every_station_with_display_names(browser: Any, stack: Stack) -> None:
    """The gym-floor wall: a tile per station found on the broker, names not ids, live reps and the last set.

    rack-2: a member with a display name, reps and a set from an aggregator account; rack-3: idle; rack-4: its
    node's Last Will (the connection dropped without a DISCONNECT); rack-5: a member without a profile (short id).
    """
    named, unnamed = "m-1042", "m-7f3a9c2e41d0b5aa"
    pw = stack.passwords
    desk = connect(stack.mqtt_port, "desk", pw["desk"])
    agg = connect(stack.mqtt_port, "agg-2", pw["agg-2"])
    nodes = {n: connect(stack.mqtt_port, n, pw[n]) for n in ("rack-2", "rack-3", "rack-5")}
    now_ms = int(time.time() * 1000)

    def status(node: str, state: NodeState = "online", **fields: Any) -> bytes:
        return NodeStatus(state=state, node=node, boot="b-wall", ts=now_ms, **fields).to_json()

    def wait_text(node: str, words: str) -> None:
        page.wait_for_function(f"(document.querySelector(\"article[data-station='{node}']\")?.textContent ?? '')"
                               f".includes({json.dumps(words)})")

    # rack-4's node: online, then gone without a DISCONNECT, so the broker publishes its Last Will.
    lost = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rack-4", protocol=mqtt.MQTTv5)
    lost.username_pw_set("rack-4", pw["rack-4"])
    lost.will_set("gym/main/nodes/rack-4/status", status("rack-4", "offline"), qos=1, retain=True)
    lost.connect("127.0.0.1", stack.mqtt_port, keepalive=10)
    lost.loop_start()
    lost.publish("gym/main/nodes/rack-4/status", status("rack-4"), qos=1, retain=True).wait_for_publish(5)
    page = open_page(browser, stack.url("&view=wall&kiosk=1&set_s=2"), TV)
    try:
        assert desk.publish(f"gym/main/members/{named}/profile", b'{"v":1,"display_name":"Sam Lee"}',
                            retain=True) == "Success"
        for node, member in (("rack-2", named), ("rack-5", unnamed)):
            assert nodes[node].publish(f"gym/main/nodes/{node}/status", status(node), retain=True) == "Success"
            session = SessionMessage(member=member, exercise="squat", ts=now_ms, checked_in_by="staff")
            assert desk.publish(f"gym/main/nodes/{node}/session", session.to_json(), retain=True) == "Success"
        assert nodes["rack-3"].publish("gym/main/nodes/rack-3/status", status("rack-3", activity="idle"),
                                       retain=True) == "Success"
        lost.loop_stop()
        sock = lost.socket()
        assert sock is not None
        sock.close()

        sign_in(page, "wall", pw["wall"])
        page.wait_for_selector("#wall:not([hidden])")
        for node in WALL_NODES:
            page.wait_for_selector(f"article[data-station='{node}']")
        wait_text("rack-4", "Camera offline")
        phases = page.eval_on_selector_all("article[data-station]", "els => Object.fromEntries(els.map("
                                           "e => [e.dataset.station, e.dataset.phase]))")
        assert {n: phases[n] for n in WALL_NODES} == {"rack-2": "training", "rack-3": "idle", "rack-4": "offline",
                                                      "rack-5": "training"}, phases
        wait_text("rack-2", "Sam Lee")
        assert page.text_content("article[data-station='rack-2'] .t-member") == "Sam Lee"
        assert page.text_content("article[data-station='rack-5'] .t-member") == "m-7f3a9c2e…"
        assert "Waiting" not in tile_text(page, "rack-3") and "Idle" in tile_text(page, "rack-3")

        # Live: each rep's count and grade, then the set's grade, which goes away after set_s.
        grades: tuple[Grade, ...] = ("A", "B", "C")
        latency = []
        for index, grade in enumerate(grades, start=1):
            sent = time.time() * 1000
            assert agg.publish("gym/main/nodes/rack-2/reps", wall_rep("rack-2", named, index, grade).to_json()) \
                == "Success"
            tile = "document.querySelector(\"article[data-station='rack-2']\")"
            page.wait_for_function(f"{tile}.dataset.repIndex === '{index}'")
            assert page.text_content("article[data-station='rack-2'] .t-count") == str(index)
            assert page.text_content("article[data-station='rack-2'] .t-grade") == grade
            latency.append(float(page.evaluate(f"+{tile}.dataset.shownAt")) - sent)
        print(f"\nrep published -> on the wall: {[round(x) for x in latency]} ms")
        assert max(latency) < 1000, latency
        set_msg = SetMessage(node="rack-2", member=named, exercise="squat", set_id="rack-2-b0-1", start_ts=now_ms,
                             end_ts=now_ms + 9000, reps=3, partial_reps=0, score_mean=84.0, score_min=70.0,
                             grade="B", bad_ratio=0.1, main_fault="", complete=True, ended_by="rest")
        assert agg.publish("gym/main/nodes/rack-2/sets", set_msg.to_json()) == "Success"
        wait_text("rack-2", "Last set B 3 reps")
        # Every name is readable from 5 m on a 1080p TV: at least 56 px (capitals ~25 mm on a 55-inch TV).
        sizes = page.evaluate("[...document.querySelectorAll('.t-member, .t-name, .t-state, .t-grade, .t-set')]"
                              ".map(e => parseFloat(getComputedStyle(e).fontSize))")
        big = page.evaluate("[...document.querySelectorAll('.t-member, .t-grade')]"
                            ".map(e => parseFloat(getComputedStyle(e).fontSize))")
        count = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.t-count')).fontSize)")
        print(f"wall at 1920x1080, {len(phases)} tiles: text {min(sizes):.0f}-{max(sizes):.0f} px, "
              f"names and grades >= {min(big):.0f} px, count {count:.0f} px")
        assert min(big) >= 56 and min(sizes) >= 36 and count >= 150, (sizes, big, count)
        assert named not in str(page.text_content("#wall"))  # the name, never the id that has one
        assert axe_serious(page) == []
        shot(page, "wall-tv.png")
        page.wait_for_function("!document.querySelector(\"article[data-station='rack-2']\").textContent"
                               ".includes('Last set')", timeout=5000)

        # The member renames themselves; the other member checks out; the idle station wakes up.
        assert desk.publish(f"gym/main/members/{named}/profile", b'{"v":1,"display_name":"Sam"}', retain=True) \
            == "Success"
        page.wait_for_function("document.querySelector(\"article[data-station='rack-2'] .t-member\")"
                               ".textContent === 'Sam'")
        assert desk.publish("gym/main/nodes/rack-5/session", b"", retain=True) == "Success"
        wait_text("rack-5", "Waiting for check-in")
        assert nodes["rack-3"].publish("gym/main/nodes/rack-3/status", status("rack-3"), retain=True) == "Success"
        wait_text("rack-3", "Waiting for check-in")

        page.set_viewport_size(PHONE)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        assert axe_serious(page) == []
        shot(page, "wall-phone.png", full_page=True)
    finally:
        nodes["rack-4"] = connect(stack.mqtt_port, "rack-4", pw["rack-4"])
        for node in WALL_NODES:  # the other tests' screens start without these stations
            desk.publish(f"gym/main/nodes/{node}/session", b"", retain=True)
            nodes[node].publish(f"gym/main/nodes/{node}/status", b"", retain=True)
        desk.publish(f"gym/main/members/{named}/profile", b"", retain=True)
        for conn in (desk, agg, *nodes.values()):
            conn.close()
        page.close()


def test_qr_checkin_live_reps_grade_history_station_count_and_offline(
    browser: Any, stack: Stack, data_dir: Path, tmp_path: Path
) -> None:
    alice = browser.new_page(viewport=PHONE)
    bob = browser.new_page(viewport=PHONE)
    station = browser.new_page(viewport=TV)
    station.set_default_timeout(15_000)
    # The spoken cue (speak=1) through the browser's speech API: recorded here, spoken by espeak-ng on a Pi.
    station.add_init_script("window.spoken = []; window.speechSynthesis.speak = u => window.spoken.push(u.text); "
                            "window.speechSynthesis.cancel = () => {};")
    station.goto(stack.url(f"&view=station&station={NODE}&speak=1"))
    watcher, times = watch_reps(stack)
    try:
        sign_in(station, "screen", stack.passwords["screen"])
        station.wait_for_selector("#station:not([hidden])")
        assert station.text_content("#st-state") == "Waiting for check-in"
        shot(station, "station-waiting-tv.png")

        # Self check-in: the station's QR code opens the member page on that station; alice taps Start.
        # The printed sheet: the PDF rendered by poppler's pdftoppm, the code read back from the page.
        sheet = tmp_path / "stations.pdf"
        subprocess.run(cli("stations", "qr", "--url", f"https://127.0.0.1:{stack.wss_port}/", "--station", NODE,
                           "--out", str(sheet)), check=True, capture_output=True, timeout=30)
        subprocess.run(["pdftoppm", "-r", "150", "-gray", "-png", "-singlefile", str(sheet), str(tmp_path / "page")],
                       check=True, capture_output=True, timeout=30)
        import cv2

        url, *_ = cv2.QRCodeDetector().detectAndDecode(cv2.imread(str(tmp_path / "page.png")))
        assert url == f"https://127.0.0.1:{stack.wss_port}/?site=main&station={NODE}"
        alice.goto(url)
        bob.goto(url)
        sign_in(alice, "alice", stack.passwords["alice"])
        sign_in(bob, "bob", stack.passwords["bob"])
        for page in (alice, bob):
            page.wait_for_selector("#here:not([hidden])")
            page.wait_for_function("document.getElementById('here-status').textContent.startsWith('Tap Start')")
        # Display names: staff set one (formcheck member name), the member changes it on the page.
        subprocess.run(cli("member", "name", "alice", "Ali", "--broker", f"127.0.0.1:{stack.mqtt_port}", "--username",
                           "desk", "--password-file", str(stack.secrets / "desk.password")),
                       check=True, capture_output=True, timeout=30)
        alice.wait_for_function("document.getElementById('display-name').value === 'Ali'")
        shot(alice, "checkin-phone.png")
        alice.select_option("#exercise", "squat")
        alice.click("#start")
        alice.wait_for_function(f"document.getElementById('here-status').textContent.startsWith("
                                f"'You are checked in at {NODE}')")
        station.wait_for_function("document.getElementById('st-state').textContent === 'Training'")
        station.wait_for_function("document.getElementById('st-member').textContent === 'Ali'")
        assert station.text_content("#st-exercise") == "Squat"
        alice.fill("#display-name", "Alice A.")
        alice.click("#name-save")
        station.wait_for_function("document.getElementById('st-member').textContent === 'Alice A.'")
        # Bob cannot take the station over.
        bob.click("#start")
        bob.wait_for_function("document.getElementById('here-error').textContent.includes('in use')")
        assert station.text_content("#st-member") == "Alice A."

        edge_env = {**os.environ, "FORMCHECK_EDGE__MQTT__USERNAME": NODE,
                    "FORMCHECK_EDGE__MQTT__PASSWORD": stack.passwords[NODE]}
        edge = subprocess.Popen(cli("edge", "--source", str(data_dir / CLIP), "--node", NODE, "--broker",
                                    f"127.0.0.1:{stack.mqtt_port}", "--realtime", "on"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=edge_env)
        try:
            # Live: each rep appears on the member's phone and the station screen while the clip plays.
            alice.wait_for_selector("#live-reps li[data-rep-index='2']", timeout=120_000)
            station.wait_for_function("+document.getElementById('st-count').textContent >= 2")
            shot(station, "station-tv.png")
            station.set_viewport_size(PHONE)
            shot(station, "station-phone.png")
            station.set_viewport_size(TV)
            _, err = edge.communicate(timeout=120)
            assert edge.returncode == 0, err[-2000:]
        finally:
            if edge.poll() is None:
                edge.kill()
                edge.wait()

        # The set: grade, score and what to fix in plain words, then the history.
        alice.wait_for_function("document.getElementById('live-status').textContent.startsWith('Set finished')",
                                timeout=60_000)
        rows = stack.influxd.query('SELECT * FROM "set"', db="formcheck")
        assert len(rows) == 1 and rows[0]["member"] == "alice" and rows[0]["reps"] >= 2, rows
        stored = rows[0]
        reps = int(stored["reps"])
        assert alice.text_content("#live-count") == str(reps)
        station.wait_for_function(f"document.getElementById('st-count').textContent === '{reps}'")
        spoken = station.evaluate("window.spoken")
        assert [int(words.split(".")[0]) for words in spoken] == list(range(1, reps + 1)), spoken
        assert any(len(words) > 3 for words in spoken), spoken  # a cue after a rep with a fault

        # Latency: rep message at an MQTT client -> the rep visible in the member's page.
        shown = alice.eval_on_selector_all("#live-reps li", "els => els.map(e => [+e.dataset.repIndex, "
                                           "+e.dataset.shownAt])")
        assert [i for i, _ in shown] == list(range(1, reps + 1))
        with times.lock:
            lat = [at - times.arrived[i] for i, at in shown]
        print(f"\nrep message -> visible in the member page: {[round(x) for x in lat]} ms, "
              f"max {max(lat):.0f} ms, median {statistics.median(lat):.0f} ms")
        assert max(lat) < 1000, lat

        result = alice.text_content("#result") or ""
        assert f"{reps} reps" in result and stored["grade"] in result
        assert ": " in str(stored["main_fault"]), stored  # the fault, then what to do about it
        assert f"What to fix: {stored['main_fault']}." in result
        alice.wait_for_selector("#history tbody tr")
        assert alice.eval_on_selector_all("#history tbody tr", "els => els.length") == 1
        shot(alice, "member-phone.png", full_page=True)
        alice.evaluate("document.getElementById('live-title').parentElement.scrollIntoView()")
        alice.screenshot(path=str(SHOTS / "member-set-phone.png"))  # the README's: this set, its grade, the fix
        alice.set_viewport_size(TV)
        shot(alice, "member-tv.png")

        # Station: the set summary, then the camera's stop shows as offline.
        station.wait_for_function("document.getElementById('st-state').textContent === 'Camera offline'")
        assert station.is_visible("#st-summary")
        shot(station, "station-offline-tv.png")

        # Member B saw nothing of member A, live or history.
        assert bob.text_content("#live-count") == "0"
        assert bob.eval_on_selector_all("#live-reps li", "els => els.length") == 0
        assert "No set yet." in (bob.text_content("#result") or "")
        assert "No sets yet." in (bob.text_content("#history") or "")
        assert stored["set_id"] not in bob.content()

        for name, page in (("member", alice), ("station", station), ("member B", bob)):
            assert axe_serious(page) == [], name

        # Bob cannot check alice out, nor ask for a check-in as alice (the ACL: only alice writes her requests).
        bob.close()
        as_bob = connect(stack.mqtt_port, "bob", stack.passwords["bob"])
        try:
            stop = b'{"v":1,"action":"stop","node":"%s"}' % NODE.encode()
            assert as_bob.publish("gym/main/members/alice/checkin", stop) == "Not authorized"
            assert as_bob.publish("gym/main/members/bob/checkin", stop) == "Success"
            as_bob.subscribe("gym/main/members/bob/session")
            assert wait_until(lambda: any(b"not checked in" in p for p in
                                          as_bob.received("gym/main/members/bob/session")), 5)
            # A station the broker does not know (not a node account): the broker refuses the session, the service
            # undoes it and says why.
            ghost = b'{"v":1,"action":"start","node":"ghost-station"}'
            assert as_bob.publish("gym/main/members/bob/checkin", ghost) == "Success"
            assert wait_until(lambda: any(b"not a registered station" in p for p in
                                          as_bob.received("gym/main/members/bob/session")), 5)
        finally:
            as_bob.close()
        assert station.text_content("#st-member") == "Alice A."
        # Alice stops: the station is free again.
        alice.set_viewport_size(PHONE)
        alice.click("#stop")
        alice.wait_for_function("document.getElementById('here-status').textContent.startsWith('Tap Start')")
        station.wait_for_function("document.getElementById('st-training').hidden")
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        for page in (alice, bob, station):
            page.close()
    for source, target in DOC_SHOTS.items():
        shutil.copyfile(SHOTS / source, REPO_ROOT / "docs" / target)


def test_demo_pages_work_against_the_demo_broker(browser: Any, tmp_path: Path) -> None:
    """`make demo` prints these URLs and passwords: the member page logs in and shows the member's own set."""
    from formcheck.demo import STATIONS, demo_web_config
    from formcheck.local_services import running_mosquitto

    extra, web = demo_web_config(tmp_path, STATIONS)
    with running_mosquitto(extra, {"websockets": web.port}) as mosq:
        page = browser.new_page(viewport=PHONE)
        try:
            page.set_default_timeout(15_000)
            page.goto(web.member_url())
            sign_in(page, "alice", "wrong-password")
            page.wait_for_function("document.getElementById('login-error').textContent.startsWith('Wrong')")
            sign_in(page, "alice", web.passwords["alice"])
            page.wait_for_selector("#member:not([hidden])")
            note = {"v": 1, "node": "rack-1", "member": "alice", "exercise": "squat", "set_id": "s-1",
                    "start_ts": 1_700_000_000_000, "end_ts": 1_700_000_010_000, "reps": 5, "partial_reps": 0,
                    "score_mean": 88.0, "score_min": 80.0, "grade": "B", "bad_ratio": 0.1,
                    "main_fault": "knees caved in on reps 1–3: push them out over your toes", "complete": True,
                    "ended_by": "rest"}
            anonymous = connect(mosq.port, None, None)  # the demo's own processes are anonymous
            try:
                for member in ("alice", "bob"):
                    payload = json.dumps({**note, "member": member, "set_id": f"s-{member}"}).encode()
                    assert anonymous.publish(f"gym/main/members/{member}/notifications", payload, retain=True) \
                        == "Success"
            finally:
                anonymous.close()
            page.wait_for_function("document.getElementById('result').textContent.includes('push them out')")
            assert "s-bob" not in page.content()

            # The wall URL the demo prints, its own display account: alice at rack-1 by the name the demo gives her
            # (published here as the demo's anonymous processes do: the CLI's two imports would cost 2.5 s).
            station = STATIONS[0]
            anonymous = connect(mosq.port, None, None)
            try:
                profile = json.dumps({"v": 1, "display_name": station.display_name}).encode()
                session = SessionMessage(member=station.member, exercise="squat").to_json()
                for topic, payload in ((f"members/{station.member}/profile", profile),
                                       (f"nodes/{station.node}/session", session)):
                    assert anonymous.publish(f"gym/main/{topic}", payload, retain=True) == "Success"
            finally:
                anonymous.close()
            page.goto(web.wall_url())
            sign_in(page, "wall", web.passwords["wall"])
            page.wait_for_function(f"document.querySelector(\"article[data-station='{station.node}'] .t-member\")"
                                   f"?.textContent === {json.dumps(station.display_name)}")
        finally:
            page.close()
