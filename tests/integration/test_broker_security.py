"""The shipped ``mosquitto/mosquitto.conf`` run by the real Mosquitto: authentication, ACL, TLS, websockets.

The production file is rendered with free loopback ports and temporary paths (``render_config`` changes
listener, path and ``user`` lines only and refuses to leave a production port or path in place), the
accounts are made with ``formcheck broker users add`` itself, and a test CA and server certificate (SAN
IP:127.0.0.1) are made with ``openssl``. ACL checks assert on delivery, with a barrier message published
after the denied one, never on the acknowledgement alone.
"""

from __future__ import annotations

import http.client
import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from formcheck.broker_admin import render_config
from formcheck.cli import main as cli_main
from formcheck.local_services import Mosquitto, free_port, start_mosquitto_with_config
from formcheck_protocol.topics import Topics
from formcheck_runtime.paths import REPO_ROOT

pytestmark = pytest.mark.broker

CONF = REPO_ROOT / "mosquitto" / "mosquitto.conf"
WEB_DIST = REPO_ROOT / "web" / "dist"  # `make web` builds the pages the websockets listener serves
T = Topics(site="main")
WAIT = 5.0  # every wait below is bounded by this
ACCOUNTS = {"st-a": "node", "st-b": "node", "agg": "aggregator", "desk": "staff", "wall": "display", "ops": "operator",
            "alice": "member",
            "bob": "member"}


# --- certificates ------------------------------------------------------------------------------------------------


def _openssl(cwd: Path, *args: str) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"openssl {args[0]} failed: {result.stderr.strip()}"


def make_ca(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(directory, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN=formcheck {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return directory / f"{name}.crt"


def make_cert(directory: Path, ca: str, name: str, *, server: bool) -> tuple[Path, Path]:
    """Key + certificate signed by ``ca``: a server certificate for IP 127.0.0.1, or a client certificate."""
    ext = directory / f"{name}.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        + ("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" if server else "extendedKeyUsage=clientAuth\n")
    )
    _openssl(directory, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={'127.0.0.1' if server else name}")
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name)
    return directory / f"{name}.crt", directory / f"{name}.key"


# --- broker ------------------------------------------------------------------------------------------------------


@dataclass
class Broker:
    server: Mosquitto
    config_text: str
    accounts: Path
    tls: Path
    passwords: dict[str, str]

    @property
    def mqtt_port(self) -> int:
        return self.server.port

    @property
    def tls_port(self) -> int:
        return self.server.extra_ports["tls"]

    @property
    def ws_port(self) -> int:
        return self.server.extra_ports["websockets"]

    @property
    def web_port(self) -> int:
        return self.server.extra_ports["web"]


def add_accounts(accounts: Path, secrets: Path, names: dict[str, str]) -> dict[str, str]:
    """Accounts made by the real CLI: generated passwords for most, ``--password-file`` for one."""
    secrets.mkdir(parents=True, exist_ok=True)
    passwords = {}
    for index, (name, role) in enumerate(names.items()):
        secret = secrets / f"{name}.password"
        if index == 0:
            secret.write_text("correct horse battery staple\n")
            option = ["--password-file", str(secret)]
        else:
            option = ["--generate-password-to", str(secret)]
        assert cli_main(["broker", "users", "add", name, "--role", role, "--dir", str(accounts), *option]) == 0
        passwords[name] = secret.read_text().splitlines()[0]
    return passwords


def render(root: Path, ports: dict[int, int], text: str | None = None) -> str:
    return render_config(
        CONF.read_text() if text is None else text,
        ports=ports,
        bind="127.0.0.1",
        paths={
            "/etc/mosquitto/formcheck/": root / "accounts",
            "/etc/mosquitto/certs/": root / "tls",
            "/etc/mosquitto/ca_certificates/": root / "tls",
            "/var/lib/mosquitto/": root / "data",
            "/usr/share/formcheck/web/": WEB_DIST,
        },
        # Started as root, the broker would drop to `mosquitto`, which cannot enter a private temp dir.
        user=pwd.getpwuid(os.geteuid()).pw_name,
    )


# Every listener of the shipped file, by the name the tests use for it.
LISTENERS = {1883: "mqtt", 8883: "tls", 9001: "websockets", 8080: "web"}


def free_ports() -> dict[int, int]:
    """A free loopback port for each listener of the shipped file."""
    return {port: free_port() for port in LISTENERS}


def named(ports: dict[int, int]) -> dict[str, int]:
    return {LISTENERS[port]: free for port, free in ports.items()}


def start(root: Path, text: str | None = None) -> tuple[Mosquitto, str]:
    ports = free_ports()
    (root / "data").mkdir(exist_ok=True)
    rendered = render(root, ports, text)
    server = start_mosquitto_with_config(rendered, root / "run", named(ports))
    return server, rendered


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("broker-security")
    tls = root / "tls"
    make_ca(tls, "formcheck-ca")
    make_cert(tls, "formcheck-ca", "formcheck-server", server=True)
    make_ca(tls / "other", "other-ca")
    passwords = add_accounts(root / "accounts", root / "secrets", ACCOUNTS)
    server, rendered = start(root)
    try:
        yield Broker(server, rendered, root / "accounts", tls, passwords)
    finally:
        server.stop()


# --- clients -----------------------------------------------------------------------------------------------------


@dataclass
class Conn:
    """A connected (or refused) paho client that records CONNACK, PUBACK reason codes and messages."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)
    subacks: dict[int, list[str]] = field(default_factory=dict)
    pubacks: dict[int, str] = field(default_factory=dict)
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, *filters: str) -> list[str]:
        result, mid = self.client.subscribe([(f, 1) for f in filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        deadline = time.monotonic() + WAIT
        while mid not in self.subacks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert mid in self.subacks, f"no SUBACK for {filters}"
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> str:
        """Publish at QoS 1; the PUBACK reason code ('Success' for any MQTT 3.1.1 PUBACK)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=WAIT)
        assert info.is_published(), f"no PUBACK for {topic}"
        return self.pubacks.get(info.mid, "Success")

    def wait_for(self, topic: str, payload: bytes) -> bool:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with self.lock:
                if any(t == topic and p == payload for t, p, _ in self.messages):
                    return True
            time.sleep(0.01)
        return False

    def received(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connect(
    port: int,
    username: str | None,
    password: str | None,
    *,
    protocol: int = mqtt.MQTTv5,
    transport: str = "tcp",
    ca: Path | None = None,
    cert: tuple[Path, Path] | None = None,
    expect_connack: bool = True,
    client_id: str | None = None,
    session_expiry_s: int = 0,
) -> Conn:
    """``session_expiry_s`` > 0: an MQTT 5 persistent session (clean start off), like the aggregator's."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{username}-{time.monotonic_ns()}",
                         protocol=protocol, transport=transport, reconnect_on_failure=False)  # type: ignore[arg-type]
    conn = Conn(client)

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        conn.connack = reason
        if not reason.is_failure:
            conn.connected.set()

    def on_message(c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        with conn.lock:
            conn.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    client.on_connect = on_connect
    client.on_disconnect = lambda *a: conn.closed.set()
    client.on_message = on_message
    client.on_subscribe = lambda c, u, mid, codes, p: conn.subacks.__setitem__(mid, [str(x) for x in codes])
    # Any success code is "Success" (MQTT 5 also says "No matching subscribers"); refusals keep their words.
    client.on_publish = lambda c, u, mid, reason, p: conn.pubacks.__setitem__(
        mid, str(reason) if reason.is_failure else "Success")
    if username is not None:
        client.username_pw_set(username, password)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), certfile=str(cert[0]) if cert else None,
                       keyfile=str(cert[1]) if cert else None, cert_reqs=ssl.CERT_REQUIRED)
    props = None
    if protocol == mqtt.MQTTv5:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.ReceiveMaximum = 1000  # see DESIGN.md: paho's MQTT 5 default throttles QoS 1 delivery
        if session_expiry_s:
            props.SessionExpiryInterval = session_expiry_s
    if protocol == mqtt.MQTTv5:
        client.connect("127.0.0.1", port, keepalive=10, properties=props, clean_start=not session_expiry_s)
    else:
        client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    if expect_connack:
        deadline = time.monotonic() + WAIT
        while conn.connack is None and not conn.closed.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
    return conn


def login(broker: Broker, name: str, **kwargs: Any) -> Conn:
    conn = connect(broker.mqtt_port, name, broker.passwords[name], **kwargs)
    assert conn.connected.is_set(), f"{name} could not log in: {conn.connack}"
    return conn


@pytest.fixture
def clients() -> Iterator[list[Conn]]:
    opened: list[Conn] = []
    yield opened
    for conn in opened:
        conn.close()


# --- tests -------------------------------------------------------------------------------------------------------


def test_the_shipped_config_is_what_runs(broker: Broker) -> None:
    shipped = CONF.read_text().splitlines()
    rendered = broker.config_text.splitlines()
    assert len(shipped) == len(rendered)
    changed = {a.split()[0] for a, b in zip(shipped, rendered, strict=True) if a != b}
    assert changed <= {"listener", "password_file", "acl_file", "persistence_location", "certfile", "keyfile",
                       "cafile", "user", "http_dir"}, changed
    for needed in ("allow_anonymous false", "per_listener_settings false", "persistence true",
                   "protocol websockets", "socket_domain ipv4", "require_certificate false"):
        assert needed in shipped
    # Our process, and only on loopback, holds all three listeners.
    listening = {(c.laddr.ip, c.laddr.port) for c in psutil.Process(broker.server.pid).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    ports = {broker.mqtt_port, broker.tls_port, broker.ws_port, broker.web_port}
    assert ports <= {port for _, port in listening}
    assert {ip for ip, port in listening if port in ports} == {"127.0.0.1"}


def test_anonymous_and_wrong_password_are_refused(broker: Broker, clients: list[Conn]) -> None:
    outcomes = {
        "anonymous v5": connect(broker.mqtt_port, None, None),
        "anonymous v3.1.1": connect(broker.mqtt_port, None, None, protocol=mqtt.MQTTv311),
        "wrong password": connect(broker.mqtt_port, "st-a", "not-the-password"),
        "unknown user": connect(broker.mqtt_port, "nobody", broker.passwords["st-a"]),
        "anonymous websockets": connect(broker.ws_port, None, None, transport="websockets",
                                        ca=broker.tls / "formcheck-ca.crt"),
    }
    clients.extend(outcomes.values())
    reasons = {what: str(conn.connack) for what, conn in outcomes.items()}
    assert not any(conn.connected.is_set() for conn in outcomes.values()), reasons
    assert reasons == {
        "anonymous v5": "Not authorized",
        "anonymous v3.1.1": "Not authorized",
        "wrong password": "Not authorized",
        "unknown user": "Not authorized",
        "anonymous websockets": "Not authorized",
    }


def test_node_cannot_publish_into_another_nodes_topics(
    broker: Broker, clients: list[Conn], record_property: Callable[[str, object], None]
) -> None:
    agg = login(broker, "agg")
    node_a = login(broker, "st-a")
    clients += [agg, node_a]
    assert agg.subscribe(T.all_nodes("frames"), T.all_nodes("status")) == ["Granted QoS 1"] * 2
    reasons = {
        "B frames": node_a.publish(T.node("st-b", "frames"), b"forged"),
        "B status": node_a.publish(T.node("st-b", "status"), b"forged", retain=True),
        "own frames": node_a.publish(T.node("st-a", "frames"), b"barrier"),
    }
    record_property("puback_reason_codes", reasons)
    assert reasons == {"B frames": "Not authorized", "B status": "Not authorized", "own frames": "Success"}
    # The barrier left the same client after the forged messages: once it arrived, they would have too.
    assert agg.wait_for(T.node("st-a", "frames"), b"barrier")
    assert agg.received(T.node("st-b", "frames")) == []
    assert agg.received(T.node("st-b", "status")) == []


def test_mqtt311_denied_publish_is_acknowledged_then_dropped(broker: Broker, clients: list[Conn]) -> None:
    agg = login(broker, "agg")
    node_a = login(broker, "st-a", protocol=mqtt.MQTTv311)
    clients += [agg, node_a]
    agg.subscribe(T.all_nodes("frames"))
    # MQTT 3.1.1 has no reason code: the PUBACK looks like success ...
    assert node_a.publish(T.node("st-b", "frames"), b"forged-311") == "Success"
    assert node_a.publish(T.node("st-a", "frames"), b"barrier-311") == "Success"
    # ... and only delivery shows the ACL at work.
    assert agg.wait_for(T.node("st-a", "frames"), b"barrier-311")
    assert agg.received(T.node("st-b", "frames")) == []


def test_member_reads_only_their_own_notifications(broker: Broker, clients: list[Conn]) -> None:
    agg = login(broker, "agg")
    alice = login(broker, "alice")
    bob = login(broker, "bob")
    clients += [agg, alice, bob]
    # Mosquitto 2.0 grants the subscription to someone else's topic; the ACL acts on every delivery.
    assert alice.subscribe(T.member_notifications("bob"), T.member_notifications("alice")) == ["Granted QoS 1"] * 2
    bob.subscribe(T.member_notifications("bob"))
    assert agg.publish(T.member_notifications("bob"), b"bob's set", retain=True) == "Success"
    assert agg.publish(T.member_notifications("alice"), b"alice's set", retain=True) == "Success"
    assert bob.wait_for(T.member_notifications("bob"), b"bob's set")
    assert alice.wait_for(T.member_notifications("alice"), b"alice's set")
    assert alice.received(T.member_notifications("bob")) == []
    # Retained messages are checked too: a new subscription to both gets only her own retained set. (Her second
    # login replaces the first: the account's name is its client id, one connection per account.)
    late = login(broker, "alice")
    clients.append(late)
    assert alice.closed.wait(WAIT), "a second login with the same account replaces the first"
    late.subscribe(T.member_notifications("bob"), T.member_notifications("alice"))
    assert late.wait_for(T.member_notifications("alice"), b"alice's set")
    assert late.received(T.member_notifications("bob")) == []
    # A member cannot publish notifications, nor pose as a station named after herself (the `topic deny`
    # lines: the node patterns alone would let any account write nodes/<its own name>/frames).
    node_a = login(broker, "st-a")
    clients.append(node_a)
    agg.subscribe(T.all_nodes("frames"))
    assert late.publish(T.member_notifications("alice"), b"self-made") == "Not authorized"
    assert late.publish(T.node("alice", "frames"), b"phantom") == "Not authorized"
    # Alice's PUBACK came back before the barrier left: had the broker accepted her frame, it would be ahead.
    assert node_a.publish(T.node("st-a", "frames"), b"barrier-member") == "Success"
    assert agg.wait_for(T.node("st-a", "frames"), b"barrier-member")
    assert agg.received(T.node("alice", "frames")) == []
    assert late.received(T.member_notifications("alice")) == [b"alice's set"]


@pytest.mark.security
def test_member_page_topics_are_each_members_own(broker: Broker, clients: list[Conn]) -> None:
    """Issue 15: live reps, history, check-in state and display name are readable by their member only (and the
    screens' accounts for the name); a member writes only her own check-in requests and display name."""
    agg = login(broker, "agg")
    alice = login(broker, "alice")
    bob = login(broker, "bob")
    wall = login(broker, "wall")
    clients += [agg, alice, bob, wall]
    kinds = ("reps", "history", "session", "profile")
    bob.subscribe(*(T.member("alice", k) for k in kinds), *(T.member("bob", k) for k in kinds))
    wall.subscribe(T.member("alice", "profile"))
    assert agg.publish(T.member("alice", "reps"), b"alice's rep") == "Success"
    assert agg.publish(T.member("alice", "history"), b"alice's history", retain=True) == "Success"
    assert alice.publish(T.member("alice", "profile"), b'{"v":1,"display_name":"A"}', retain=True) == "Success"
    assert alice.publish(T.member("bob", "profile"), b'{"v":1,"display_name":"x"}', retain=True) == "Not authorized"
    assert alice.publish(T.member("bob", "checkin"), b"{}") == "Not authorized"
    assert alice.publish(T.member("alice", "session"), b"{}") == "Not authorized"  # only the check-in service
    assert wall.wait_for(T.member("alice", "profile"), b'{"v":1,"display_name":"A"}')
    assert agg.publish(T.member("bob", "history"), b"barrier-bob", retain=True) == "Success"
    assert bob.wait_for(T.member("bob", "history"), b"barrier-bob")
    assert [t for t, _, _ in bob.messages if "/alice/" in t] == []
    assert wall.publish(T.member("alice", "profile"), b"{}") == "Not authorized"  # screens write nothing
    # No station or screen can check itself in as a "member" named after it (the member patterns apply to every
    # account): the ACL denies each account that is not a member its own member topics.
    node_a = login(broker, "st-a")
    clients.append(node_a)
    start = b'{"v":1,"action":"start","node":"st-a"}'
    assert wall.publish(T.member("wall", "checkin"), start) == "Not authorized"
    assert node_a.publish(T.member("st-a", "checkin"), start) == "Not authorized"
    assert alice.publish(T.member("alice", "checkin"), start) == "Success"
    # The node's own rights (the patterns) are untouched by its account's line.
    assert node_a.publish(T.node("st-a", "frames"), b"still a station") == "Success"


def test_sessions_are_written_by_staff_not_by_another_node(broker: Broker, clients: list[Conn]) -> None:
    node_a = login(broker, "st-a")
    node_b = login(broker, "st-b")
    desk = login(broker, "desk")
    clients += [node_a, node_b, desk]
    session_b = T.node("st-b", "session")
    node_b.subscribe(session_b)
    assert node_a.publish(session_b, b'{"member": "mallory"}', retain=True) == "Not authorized"
    assert desk.publish(session_b, b'{"member": "bob"}', retain=True) == "Success"
    assert node_b.wait_for(session_b, b'{"member": "bob"}')
    assert node_b.received(session_b) == [b'{"member": "bob"}']
    # The wall display (staff) reads reps; a node may not write them, staff may not write frames.
    agg = login(broker, "agg")
    clients.append(agg)
    desk.subscribe(T.all_nodes("reps"))
    agg.subscribe(T.all_nodes("frames"))
    assert node_a.publish(T.node("st-a", "reps"), b"self-graded") == "Not authorized"
    assert desk.publish(T.node("st-a", "frames"), b"staff-frame") == "Not authorized"
    assert agg.publish(T.node("st-a", "reps"), b"graded") == "Success"
    assert node_a.publish(T.node("st-a", "frames"), b"barrier-staff") == "Success"
    assert desk.wait_for(T.node("st-a", "reps"), b"graded")
    assert agg.wait_for(T.node("st-a", "frames"), b"barrier-staff")
    assert desk.received(T.node("st-a", "reps")) == [b"graded"]
    assert agg.received(T.node("st-a", "frames")) == [b"barrier-staff"]
    # Checking a member out (empty retained payload) is staff's too.
    assert node_a.publish(session_b, b"", retain=True) == "Not authorized"
    assert node_b.received(session_b) == [b'{"member": "bob"}']


def test_tls_listener_with_the_test_ca(broker: Broker, clients: list[Conn]) -> None:
    agg = login(broker, "agg")
    clients.append(agg)
    agg.subscribe(T.all_nodes("frames"))
    node = connect(broker.tls_port, "st-a", broker.passwords["st-a"], ca=broker.tls / "formcheck-ca.crt")
    clients.append(node)
    assert node.connected.is_set(), node.connack
    assert isinstance(node.client.socket(), ssl.SSLSocket)
    assert node.publish(T.node("st-a", "frames"), b"over-tls") == "Success"
    assert agg.wait_for(T.node("st-a", "frames"), b"over-tls")
    # TLS does not replace the password.
    wrong = connect(broker.tls_port, "st-a", "nope-nope-nope", ca=broker.tls / "formcheck-ca.crt")
    clients.append(wrong)
    assert str(wrong.connack) == "Not authorized"


def test_tls_fails_for_a_client_trusting_another_ca(broker: Broker) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        connect(broker.tls_port, "st-a", broker.passwords["st-a"], ca=broker.tls / "other" / "other-ca.crt")


def test_plaintext_client_on_the_tls_port_fails(broker: Broker, clients: list[Conn]) -> None:
    conn = connect(broker.tls_port, "st-a", broker.passwords["st-a"], expect_connack=False)
    clients.append(conn)
    assert conn.closed.wait(WAIT), "the TLS listener kept a plaintext connection open"
    assert not conn.connected.is_set()
    assert conn.connack is None


def test_websockets_listener_accepts_an_authenticated_client(broker: Broker, clients: list[Conn]) -> None:
    agg = login(broker, "agg")
    clients.append(agg)
    display = connect(broker.ws_port, "desk", broker.passwords["desk"], transport="websockets",
                      ca=broker.tls / "formcheck-ca.crt")
    phone = connect(broker.ws_port, "alice", broker.passwords["alice"], transport="websockets",
                    ca=broker.tls / "formcheck-ca.crt")
    clients += [display, phone]
    assert display.connected.is_set(), display.connack
    assert phone.connected.is_set(), phone.connack
    display.subscribe(T.all_nodes("reps"))
    phone.subscribe(T.member_notifications("alice"))
    assert agg.publish(T.node("st-a", "reps"), b"rep-1") == "Success"
    assert agg.publish(T.member_notifications("alice"), b"ws-set", retain=True) == "Success"
    assert display.wait_for(T.node("st-a", "reps"), b"rep-1")
    assert phone.wait_for(T.member_notifications("alice"), b"ws-set")


def https_context(ca: Path, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(alpn)
    return context


def test_the_pages_come_over_tls_where_http2_is_not_negotiated(broker: Broker) -> None:
    """The secure websockets listener serves ``web/dist`` (``http_dir``): the page on the origin of its ``wss://``,
    as the compose deployment serves it (the eclipse-mosquitto image's libwebsockets has no HTTP/2). Debian's
    2.0.11 offers HTTP/2 through ALPN, and it cannot serve files over HTTP/2, so there only a client that does
    not negotiate HTTP/2 gets them; browsers do negotiate it, hence Debian's plain-HTTP page listener, which serves
    the same files (mosquitto/README.md)."""
    if not (WEB_DIST / "index.html").is_file():
        pytest.fail("web/dist is missing: run 'make web'", pytrace=False)
    ca = broker.tls / "formcheck-ca.crt"
    with socket.create_connection(("127.0.0.1", broker.ws_port), timeout=WAIT) as raw, \
            https_context(ca, ["h2", "http/1.1"]).wrap_socket(raw, server_hostname="127.0.0.1") as offered:
        assert offered.selected_alpn_protocol() == "h2", (
            "Debian's broker no longer offers HTTP/2: the pages may come over https there too (mosquitto/README.md)")
    for name in ("index.html", "app.js"):
        secure = http.client.HTTPSConnection("127.0.0.1", broker.ws_port, timeout=WAIT,
                                             context=https_context(ca, ["http/1.1"]))
        plain = http.client.HTTPConnection("127.0.0.1", broker.web_port, timeout=WAIT)
        for connection in (secure, plain):
            try:
                connection.request("GET", f"/{name}")
                response = connection.getresponse()
                assert response.status == 200, (connection.port, response.status)
                assert response.read() == (WEB_DIST / name).read_bytes(), connection.port
            finally:
                connection.close()


def test_client_certificate_option_and_account_removal(
    tmp_path: Path, clients: list[Conn], record_property: Callable[[str, object], None]
) -> None:
    """``require_certificate true`` (README option) on a second broker; a removed account is refused on reload."""
    tls = tmp_path / "tls"
    ca = make_ca(tls, "formcheck-ca")
    make_cert(tls, "formcheck-ca", "formcheck-server", server=True)
    client_cert = make_cert(tls, "formcheck-ca", "st-a-client", server=False)
    passwords = add_accounts(tmp_path / "accounts", tmp_path / "secrets", {"st-a": "node", "desk": "staff"})
    text = CONF.read_text()
    assert text.count("require_certificate false") == 1
    server, _ = start(tmp_path, text.replace("require_certificate false", "require_certificate true"))
    try:
        try:
            without = connect(server.extra_ports["tls"], "st-a", passwords["st-a"], ca=ca)
        except (ssl.SSLError, OSError) as exc:
            outcome = f"handshake failed: {type(exc).__name__}: {exc}"
        else:
            # With TLS 1.3 the server checks the client certificate after the client considers the handshake
            # done: the failure shows as a closed connection without CONNACK.
            clients.append(without)
            assert without.closed.wait(WAIT), "a client without certificate stayed connected"
            assert not without.connected.is_set()
            outcome = f"closed after the handshake, CONNACK {without.connack}"
        record_property("without_client_certificate", outcome)
        with_cert = connect(server.extra_ports["tls"], "st-a", passwords["st-a"], ca=ca, cert=client_cert)
        clients.append(with_cert)
        assert with_cert.connected.is_set(), with_cert.connack

        # Removing an account takes effect on SIGHUP (systemctl reload) for new connections.
        desk = connect(server.port, "desk", passwords["desk"])
        clients.append(desk)
        assert desk.connected.is_set()
        assert cli_main(["broker", "users", "remove", "desk", "--dir", str(tmp_path / "accounts")]) == 0
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        refused = None
        while time.monotonic() < deadline:
            again = connect(server.port, "desk", passwords["desk"])
            clients.append(again)
            if again.connack is not None and again.connack.is_failure:
                refused = str(again.connack)
                break
            time.sleep(0.05)
        assert refused == "Not authorized"
        # Mosquitto 2.0 also re-checks connected clients on reload: the removed account's session is closed.
        assert desk.closed.wait(WAIT), "the removed account's existing connection survived the reload"
    finally:
        server.stop()


# --- issue 13: one account cannot use another client's id -------------------------------------------------------

AGGREGATOR_ID = "formcheck-aggregator-main-a"  # what the aggregator would send: guessable


@pytest.mark.security
def test_every_listener_uses_the_account_name_as_client_id() -> None:
    blocks = CONF.read_text().split("\nlistener ")[1:]
    assert len(blocks) == 4
    for block in blocks:
        settings = [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]
        assert "use_username_as_clientid true" in settings, block.splitlines()[0]
    global_section = CONF.read_text().split("\nlistener ")[0]
    assert not any(line.startswith("use_username_as_clientid") for line in global_section.splitlines())


@pytest.mark.security
@pytest.mark.parametrize("port", ["mqtt", "tls"])
def test_member_using_the_aggregators_id_neither_disconnects_it_nor_takes_its_queue(
    broker: Broker, clients: list[Conn], port: str
) -> None:
    tls = {"ca": broker.tls / "formcheck-ca.crt"} if port == "tls" else {}
    number = broker.tls_port if port == "tls" else broker.mqtt_port
    frames = T.node("st-a", "frames")
    agg = connect(number, "agg", broker.passwords["agg"], client_id=AGGREGATOR_ID, session_expiry_s=600, **tls)
    node = login(broker, "st-a")
    clients += [agg, node]
    assert agg.connected.is_set()
    assert agg.subscribe(frames) == ["Granted QoS 1"]
    # While it is connected: a member logs in with its id, clean start.
    intruder = connect(number, "alice", broker.passwords["alice"], client_id=AGGREGATOR_ID, **tls)
    clients.append(intruder)
    assert intruder.connected.is_set()
    intruder.subscribe(frames)  # granted or not, the ACL lets no frame through to a member
    assert node.publish(frames, f"{port}-live".encode()) == "Success"
    assert agg.wait_for(frames, f"{port}-live".encode()), "the aggregator lost its connection or its subscription"
    assert not agg.closed.is_set()
    assert intruder.received(frames) == []
    # While it is away: frames queue in its persistent session; the member's clean-start login with the same id
    # must neither receive them nor wipe them.
    agg.close()
    for i in range(3):
        assert node.publish(frames, f"{port}-queued-{i}".encode()) == "Success"
    thief = connect(number, "bob", broker.passwords["bob"], client_id=AGGREGATOR_ID, **tls)
    clients.append(thief)
    assert thief.connected.is_set()
    time.sleep(0.3)
    assert thief.received(frames) == []
    back = connect(number, "agg", broker.passwords["agg"], client_id=AGGREGATOR_ID, session_expiry_s=600, **tls)
    clients.append(back)
    for i in range(3):
        assert back.wait_for(frames, f"{port}-queued-{i}".encode()), f"queued frame {i} was lost"


@pytest.mark.security
def test_member_using_a_nodes_id_does_not_disconnect_it(broker: Broker, clients: list[Conn]) -> None:
    node = connect(broker.mqtt_port, "st-b", broker.passwords["st-b"], client_id="st-b")
    clients.append(node)
    assert node.connected.is_set()
    intruder = connect(broker.mqtt_port, "alice", broker.passwords["alice"], client_id="st-b")
    clients.append(intruder)
    assert intruder.connected.is_set()
    time.sleep(0.3)
    assert not node.closed.is_set(), "the node was disconnected (its Last Will would fire)"
    assert node.publish(T.node("st-b", "frames"), b"still here") == "Success"



# --- issue 13 item 12: check-in says what the broker answered ---------------------------------------------------


def checkin(broker: Broker, tmp_path: Path, *extra: str, account: str | None = None,
            command: str = "checkin", target: str | None = None) -> subprocess.CompletedProcess[str]:
    """``formcheck checkin|checkout`` for st-a (alice) against the shipped broker, as ``account``."""
    args = [command, "--node", "st-a", "--broker", target or f"127.0.0.1:{broker.mqtt_port}", *extra]
    if command == "checkin":
        args += ["--member", "alice"]
    if account is not None:
        secret = tmp_path / f"{account}.password"
        secret.write_text(broker.passwords[account] + "\n")
        args += ["--username", account, "--password-file", str(secret)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORMCHECK_MQTT__")}
    return subprocess.run([sys.executable, "-m", "formcheck.cli", *args], capture_output=True, text=True,
                          check=False, timeout=60, env=env)


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("formcheck: error: "), result.stderr
    return lines[0]


@pytest.mark.operations
def test_checkin_without_login_says_not_authorised(broker: Broker, tmp_path: Path) -> None:
    line = one_error_line(checkin(broker, tmp_path))
    assert "refused the login: Not authorized" in line and "no --username" in line


@pytest.mark.operations
def test_checkin_by_an_account_that_may_not_write_sessions_fails(broker: Broker, tmp_path: Path) -> None:
    line = one_error_line(checkin(broker, tmp_path, account="bob"))
    assert "refused the session message" in line and "Not authorized" in line


@pytest.mark.operations
def test_staff_checkin_and_checkout_are_acknowledged(broker: Broker, tmp_path: Path, clients: list[Conn]) -> None:
    done = checkin(broker, tmp_path, "--exercise", "pushup", account="desk")
    assert done.returncode == 0, done.stderr
    watcher = login(broker, "agg")
    clients.append(watcher)
    watcher.subscribe(T.node("st-a", "session"))
    deadline = time.monotonic() + WAIT
    while not watcher.received(T.node("st-a", "session")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b'"member":"alice"' in watcher.received(T.node("st-a", "session"))[0]
    out = checkin(broker, tmp_path, account="desk", command="checkout")
    assert out.returncode == 0, out.stderr
    assert "(checked out)" in out.stdout


@pytest.mark.operations
def test_checkin_to_a_tls_listener_with_the_ca(broker: Broker, tmp_path: Path) -> None:
    ca = str(broker.tls / "formcheck-ca.crt")
    result = checkin(broker, tmp_path, "--tls-ca", ca, account="desk", target=f"127.0.0.1:{broker.tls_port}")
    assert result.returncode == 0, result.stderr
    # The certificate names 127.0.0.1 only: by another name the broker is not the one the CA vouches for.
    wrong_name = checkin(broker, tmp_path, "--tls-ca", ca, account="desk", target=f"localhost:{broker.tls_port}")
    assert "TLS with broker" in one_error_line(wrong_name)


@pytest.mark.operations
def test_unreachable_broker_says_why(broker: Broker, tmp_path: Path) -> None:
    for target, words in ((f"127.0.0.1:{free_port()}", "connection refused"),
                          ("no-such-broker.invalid", "does not resolve")):
        assert words in one_error_line(checkin(broker, tmp_path, target=target))


# --- issue 13 items 3 and 4: a read-only display; rights only at the account's own site --------------------------


@pytest.mark.security
def test_display_reads_what_a_screen_shows_and_writes_nothing(broker: Broker, clients: list[Conn]) -> None:
    wall = login(broker, "wall")
    desk = login(broker, "desk")
    clients += [wall, desk]
    wall.subscribe(T.node("st-a", "session"), T.node("st-a", "status"), T.node("st-a", "reps"))
    assert desk.publish(T.node("st-a", "session"), b'{"member":"m-77"}', retain=True) == "Success"
    assert wall.wait_for(T.node("st-a", "session"), b'{"member":"m-77"}')
    reasons = {
        "session": wall.publish(T.node("st-a", "session"), b'{"member":"m-78"}', retain=True),
        "reps": wall.publish(T.node("st-a", "reps"), b"forged rep"),
        "notifications": wall.publish(T.member_notifications("alice"), b"forged set", retain=True),
        "own station name": wall.publish(T.node("wall", "frames"), b"phantom"),
    }
    assert set(reasons.values()) == {"Not authorized"}, reasons


@pytest.mark.security
def test_no_account_writes_under_another_site(broker: Broker, clients: list[Conn]) -> None:
    other = Topics(site="elsewhere")
    node, agg, desk = login(broker, "st-a"), login(broker, "agg"), login(broker, "desk")
    clients += [node, agg, desk]
    big = b"x" * 60_000  # what a node could park, retained, under invented sites before
    reasons = {
        "node status": node.publish(other.node("st-a", "status"), big, retain=True),
        "node frames": node.publish(other.node("st-a", "frames"), big, retain=True),
        "aggregator reps": agg.publish(other.node("st-a", "reps"), big, retain=True),
        "aggregator notifications": agg.publish(other.member_notifications("alice"), big, retain=True),
        "staff session": desk.publish(other.node("st-a", "session"), big, retain=True),
    }
    assert set(reasons.values()) == {"Not authorized"}, reasons


@pytest.mark.security
def test_staff_write_sessions_of_registered_stations_only(broker: Broker, clients: list[Conn]) -> None:
    desk = login(broker, "desk")
    clients.append(desk)
    assert desk.publish(T.node("st-b", "session"), b'{"member":"m-79"}', retain=True) == "Success"
    assert desk.publish(T.node("no-such-station", "session"), b"x" * 60_000, retain=True) == "Not authorized"


# --- issue 13 item 8: the operator role of `formcheck member erase` ----------------------------------------------


@pytest.mark.security
def test_operator_reads_check_ins_and_clears_notifications_only(broker: Broker, clients: list[Conn]) -> None:
    ops, agg, desk, wall = login(broker, "ops"), login(broker, "agg"), login(broker, "desk"), login(broker, "wall")
    clients += [ops, agg, desk, wall]
    ops.subscribe(T.node("st-a", "session"), T.member_notifications("bob"))
    wall.subscribe(T.node("st-a", "session"))
    assert desk.publish(T.node("st-a", "session"), b'{"member":"m-80"}', retain=True) == "Success"
    assert ops.wait_for(T.node("st-a", "session"), b'{"member":"m-80"}')          # is the member checked in?
    assert agg.publish(T.member_notifications("bob"), b"bob's last set", retain=True) == "Success"
    # It clears a member's retained notification, and reads none.
    assert ops.publish(T.member_notifications("bob"), b"", retain=True) == "Success"
    late = login(broker, "bob")
    clients.append(late)
    late.subscribe(T.member_notifications("bob"))
    late.subscribe(T.node("bob", "session"))  # barrier: any retained message came before this SUBACK
    assert late.received(T.member_notifications("bob")) == []
    reasons = {
        "session": ops.publish(T.node("st-a", "session"), b"", retain=True),
        "reps": ops.publish(T.node("st-a", "reps"), b"forged rep"),
        "frames": ops.publish(T.node("st-a", "frames"), b"forged frame"),
        "aggregator status": ops.publish(T.aggregator_status(), b"forged", retain=True),
        "other site": ops.publish(Topics(site="elsewhere").member_notifications("bob"), b"", retain=True),
    }
    assert set(reasons.values()) == {"Not authorized"}, reasons
    assert desk.publish(T.node("st-a", "session"), b'{"member":"m-81"}', retain=True) == "Success"  # barrier
    assert wall.wait_for(T.node("st-a", "session"), b'{"member":"m-81"}')
    assert b"" not in wall.received(T.node("st-a", "session"))
    assert ops.received(T.member_notifications("bob")) == []
