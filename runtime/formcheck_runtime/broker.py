"""Broker connection settings and paho client construction, shared by every formcheck MQTT client."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Final, TypeVar, overload

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import Field, SecretStr, field_validator

from formcheck_protocol.topics import DEFAULT_PREFIX
from formcheck_runtime.paho_internals import TolerantPubackClient
from formcheck_runtime.settings import Section, read_secret_file, validated_id

ClientT = TypeVar("ClientT", bound=mqtt.Client)


class TlsSection(Section):
    ca_file: Path | None = Field(None, description="CA certificate to verify the broker; enables TLS.")
    cert_file: Path | None = Field(None, description="Client certificate, when the broker requires one.")
    key_file: Path | None = Field(None, description="Client private key.")


class BrokerSection(Section):
    """Where the broker is and how to log in."""

    host: str = Field("localhost", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    prefix: str = Field(DEFAULT_PREFIX, description="Topic prefix, first topic level(s).")
    client_id: str | None = Field(None, description="MQTT client id; default derived from the service and its id.")
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer password_file or the env var).")
    password_file: Path | None = Field(None, description="File whose first line is the broker password.")
    keepalive_s: int = Field(
        15, ge=2, le=3600, description="MQTT keep-alive; the broker declares a silent client gone after 1.5x this "
        "(Mosquitto 2.0 checks every 6 s, so up to 7 s later)."
    )
    tls: TlsSection = Field(default_factory=TlsSection, description="TLS settings; off unless ca_file is set.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Reconnect delay cap (exponential backoff).")
    connect_timeout_s: float = Field(
        10.0, gt=0, description="How long the first connection may take before the broker is reported not "
        "reachable yet (the service keeps retrying; an edge node classifies and queues frames from the start)."
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        for part in value.split("/"):
            validated_id(part, "topic prefix level")
        return value

    def resolved_password(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_secret_file(self.password_file, "mqtt.password_file")
        return None


@overload
def make_client(cfg: BrokerSection, client_id: str, *, manual_ack: bool = ...) -> mqtt.Client: ...
@overload
def make_client(cfg: BrokerSection, client_id: str, *, manual_ack: bool = ..., client_class: type[ClientT]) -> ClientT:
    ...
def make_client(cfg: BrokerSection, client_id: str, *, manual_ack: bool = False,
                client_class: type[mqtt.Client] = TolerantPubackClient) -> mqtt.Client:
    """An MQTT 5 paho client (of ``client_class``) with credentials, TLS and reconnect backoff from ``cfg``."""
    client = client_class(
        CallbackAPIVersion.VERSION2, client_id=cfg.client_id or client_id, protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.resolved_password())
    if cfg.tls.ca_file is not None:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_file),
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(int(max(1, cfg.reconnect_min_s)), int(max(1, cfg.reconnect_max_s)))
    return client


def connect_properties(session_expiry_s: int = 0, receive_maximum: int | None = None) -> Properties:
    """CONNECT properties. Set Receive Maximum on subscribers: paho's MQTT 5 default throttles QoS 1 delivery."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


SESSION_TAKEN_OVER: Final = 0x8E
"""MQTT 5 DISCONNECT reason: another connection came in with this client id."""


def disconnect_reason(reason: ReasonCode) -> str:
    """The broker's reason for a disconnect, for one log line, with what to do where the operator can act.

    The shipped broker uses each account's name as its client id (``use_username_as_clientid``, so no account
    can take over another's session): a second connection with the same account takes the first one's place.
    """
    if reason.value == SESSION_TAKEN_OVER:
        return (f"{reason}: another client logged in with the same account; every node, aggregator, display and "
                "tool needs an account of its own")
    return str(reason)


def unreachable_reason(host: str, port: int, timeout_s: float = 2.0) -> str:
    """Why no MQTT connection came about, in words an installer can act on (one plain TCP probe)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"the name {host!r} does not resolve (check the host name and DNS)"
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.settimeout(timeout_s)
        try:
            probe.connect(address)
        except ConnectionRefusedError:
            return f"connection refused: nothing listens on {host}:{port} (broker down, or another port)"
        except TimeoutError:
            return f"no answer within {timeout_s:g} s from {host}:{port} (host down, or a firewall drops it)"
        except OSError as exc:
            return f"cannot connect to {host}:{port}: {exc.strerror or exc}"
    return f"{host}:{port} accepts TCP connections but gave no MQTT answer (TLS port, or not a broker?)"
