"""The ``formcheck`` command. User mistakes end in one line and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from formcheck import __version__
from formcheck_runtime.paths import POSE_MODEL, DataMissingError, cache_dir, require_data_dir

log = logging.getLogger("formcheck")

EXIT_USAGE = 2


class CliError(Exception):
    """Reported as ``formcheck: error: <message>`` with exit status 2."""


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # MediaPipe and LiteRT print through glog/absl; keep the operator's log to warnings from them.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _broker(value: str) -> tuple[str, int | None]:
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    if not port:
        return value, None
    if not port.isdigit():
        raise argparse.ArgumentTypeError(f"invalid broker {value!r}: expected HOST or HOST:PORT")
    return host, int(port)


def _on_off(value: str) -> bool:
    if value.lower() in {"on", "true", "yes", "1"}:
        return True
    if value.lower() in {"off", "false", "no", "0"}:
        return False
    raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")


def cmd_edge(args: argparse.Namespace) -> int:
    from formcheck_edge.config import ConfigError, example_yaml, load_config
    from formcheck_edge.runner import StartupError, run_edge

    if args.print_config:
        sys.stdout.write(example_yaml())
        return 0
    overrides: dict[str, Any] = {}

    def put(section: str, key: str, value: object) -> None:
        if value is not None:
            overrides.setdefault(section, {})[key] = value

    put("node", "id", args.node)
    put("node", "site", args.site)
    put("node", "exercise", args.exercise)
    put("source", "uri", args.source)
    put("source", "realtime", args.realtime)
    put("classifier", "model", args.model)
    if args.broker:
        host, port = args.broker
        put("mqtt", "host", host)
        put("mqtt", "port", port)
    if args.log_level:
        overrides["log_level"] = args.log_level
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        raise CliError(f"config: {exc}") from exc
    logging.getLogger().setLevel(config.log_level)
    try:
        return run_edge(config)
    except (StartupError, ConfigError) as exc:
        raise CliError(str(exc)) from exc


def cmd_models_build(args: argparse.Namespace) -> int:
    from formcheck_models.pose_bundle import BundleBuildError, ensure_bundle

    try:
        out = ensure_bundle(args.out, cache_dir() / "wheels")
    except BundleBuildError as exc:
        raise CliError(str(exc)) from exc
    print(f"pose model ready: {out}")
    return 0


def _require_checkout() -> None:
    """Training and evaluation rewrite the committed classifiers and reports in models/: a source checkout's only."""
    from formcheck_runtime.paths import ARTIFACTS_DIR, REPO_ROOT

    if not ((REPO_ROOT / "pyproject.toml").is_file() and ARTIFACTS_DIR.is_relative_to(REPO_ROOT)):
        raise CliError(f"this command rewrites the committed models and reports in models/ and runs in a source "
                       f"checkout only (this copy is installed in {ARTIFACTS_DIR.parent.parent})")


def cmd_models_train(args: argparse.Namespace) -> int:
    _require_checkout()
    try:
        from formcheck_models.training import train_main
    except ImportError as exc:
        raise CliError(f"training needs the [train] extra (pip install -e '.[train]'): {exc}") from exc
    return int(train_main(exercise=args.exercise))


def cmd_models_evaluate(args: argparse.Namespace) -> int:
    _require_checkout()
    try:
        from formcheck_models.training.evaluate import evaluate_main
    except ImportError as exc:
        raise CliError(f"evaluation needs the [train] extra (pip install -e '.[train]'): {exc}") from exc
    return int(evaluate_main(exercise=args.exercise))


def cmd_models_evaluate_reps(args: argparse.Namespace) -> int:
    from formcheck_models.training.rep_selection import REPORT, evaluate_reps_main
    from formcheck_runtime.paths import REPORTS_DIR

    _require_checkout()
    try:
        data = require_data_dir()
    except DataMissingError as exc:
        raise CliError(str(exc)) from exc
    return evaluate_reps_main(data, REPORTS_DIR / REPORT)


def cmd_demo(args: argparse.Namespace) -> int:
    from formcheck.demo import run_demo
    from formcheck.local_services import ServiceError

    try:
        return run_demo(args.clip, args.realtime)
    except (ServiceError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc


def cmd_analyze(args: argparse.Namespace) -> int:
    from formcheck_edge.analyze import run_analyze
    from formcheck_edge.capture import SourceError
    from formcheck_edge.classifier import ModelLoadError
    from formcheck_edge.pose import PoseModelError

    try:
        return run_analyze(args.video, args.exercise, args.json)
    except (FileNotFoundError, SourceError, ModelLoadError, PoseModelError) as exc:
        raise CliError(str(exc)) from exc


def cmd_aggregator(args: argparse.Namespace) -> int:
    from formcheck_aggregator.config import ConfigError, example_yaml, load_config
    from formcheck_aggregator.service import run_aggregator

    if args.print_config:
        sys.stdout.write(example_yaml())
        return 0
    overrides: dict[str, Any] = {}
    if args.site:
        overrides["site"] = args.site
    if args.broker:
        host, port = args.broker
        overrides["mqtt"] = {"host": host, **({"port": port} if port else {})}
    if args.influx:
        overrides["influx"] = {"url": args.influx}
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        raise CliError(f"config: {exc}") from exc
    if args.print_schema:
        from formcheck_aggregator.influx import schema_statements

        sys.stdout.write("".join(f"{statement}\n" for statement in schema_statements(config.influx)))
        return 0
    logging.getLogger().setLevel(config.log_level)
    return run_aggregator(config)


_BROKER_WAIT_S = 5.0


def _publish_session(args: argparse.Namespace, payload: bytes, member: str | None = None) -> int:
    """Publish a check-in or check-out (or, with ``member``, that member's profile) and return only once the
    broker has acknowledged it."""
    import ssl
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.reasoncodes import ReasonCode

    from formcheck_protocol.topics import TopicError, Topics
    from formcheck_runtime.broker import connect_properties, make_client, unreachable_reason
    from formcheck_runtime.settings import ConfigError

    cfg = _broker_settings(args)
    try:
        topics = Topics(site=args.site, prefix=cfg.prefix)
        topic = topics.member(member, "profile") if member else topics.node(args.node, "session")
        client = make_client(cfg, f"formcheck-session-{member or args.node}")
    except (ConfigError, TopicError) as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:  # TLS files
        raise CliError(f"cannot use the TLS files: {exc.strerror or exc}") from exc
    connack: list[ReasonCode] = []
    puback: dict[int, ReasonCode] = {}
    connected = threading.Event()
    acked = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        connack.append(reason)
        connected.set()

    def on_publish(c: mqtt.Client, u: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        puback[mid] = reason
        acked.set()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(cfg.host, cfg.port, keepalive=10, properties=connect_properties())
    except ssl.SSLError as exc:
        raise CliError(f"TLS with broker {cfg.host}:{cfg.port} failed: {exc.reason or exc}"
                       + (f" ({exc.verify_message})" if isinstance(exc, ssl.SSLCertVerificationError) else "")
                       ) from None
    except OSError:
        raise CliError(f"cannot reach broker {cfg.host}:{cfg.port}: {unreachable_reason(cfg.host, cfg.port)}") from None
    client.loop_start()
    try:
        if not connected.wait(_BROKER_WAIT_S):
            raise CliError(f"no answer from broker {cfg.host}:{cfg.port} within {_BROKER_WAIT_S:g} s: "
                           f"{unreachable_reason(cfg.host, cfg.port)}")
        if connack[0].is_failure:
            raise CliError(f"broker {cfg.host}:{cfg.port} refused the login: {connack[0]}"
                           + ("" if cfg.username else " (no --username given)"))
        info = client.publish(topic, payload, qos=1, retain=True)
        if not acked.wait(_BROKER_WAIT_S) or info.mid not in puback:
            raise CliError(f"broker {cfg.host}:{cfg.port} did not acknowledge the session message within "
                           f"{_BROKER_WAIT_S:g} s: nothing was delivered")
        if puback[info.mid].is_failure:
            raise CliError(f"broker refused the {'profile' if member else 'session'} message on {topic}: "
                           f"{puback[info.mid]} (account {cfg.username!r} may not write "
                           f"{'member profiles' if member else 'station sessions'})")
    finally:
        client.disconnect()
        client.loop_stop()
    print(f"{topic}: {payload.decode() or '(checked out)'}")
    return 0


def cmd_checkin(args: argparse.Namespace) -> int:
    import time

    from pydantic import ValidationError

    from formcheck_protocol.messages import SessionMessage

    try:
        session = SessionMessage(member=args.member, exercise=args.exercise, ts=int(time.time() * 1000),
                                 checked_in_by="staff")
    except ValidationError as exc:
        raise CliError(f"invalid member id {args.member!r}: use letters, digits, '_', '.', '-'") from exc
    return _publish_session(args, session.to_json())


def cmd_checkout(args: argparse.Namespace) -> int:
    return _publish_session(args, b"")


def cmd_member_name(args: argparse.Namespace) -> int:
    """Set the name a member appears by on station screens (staff; the member can change it on their page)."""
    from pydantic import ValidationError

    from formcheck_protocol.messages import MemberProfile
    from formcheck_protocol.topics import TopicError, level

    try:
        level(args.member, "member id")
        profile = MemberProfile(display_name=args.name.strip())
    except (TopicError, ValidationError) as exc:
        raise CliError(f"invalid member or name: use 1-40 printable characters for the name ({exc.__class__.__name__})"
                       ) from exc
    return _publish_session(args, profile.to_json(), member=args.member)


def _broker_settings(args: argparse.Namespace, prefix: str | None = None) -> Any:
    """The broker options of a command (--broker, --username, --password-file, --tls-ca) as a BrokerSection."""
    from formcheck_runtime.broker import BrokerSection
    from formcheck_runtime.settings import ConfigError, load_settings

    host, port = args.broker or ("localhost", None)
    given: dict[str, Any] = {"host": host, **({"port": port} if port else {}), **({"prefix": prefix} if prefix else {})}
    if args.username:
        given["username"] = args.username
    if args.password_file:
        given["password_file"] = args.password_file
    if args.tls_ca:
        given["tls"] = {"ca_file": args.tls_ca}
    try:
        return load_settings(BrokerSection, None, given, None, "FORMCHECK_MQTT__")
    except ConfigError as exc:
        raise CliError(str(exc)) from exc


def cmd_checkin_service(args: argparse.Namespace) -> int:
    """Members' own start / stop from the member page become stations' sessions (formcheck.self_checkin)."""
    import signal
    import threading

    from formcheck.self_checkin import run
    from formcheck_protocol.topics import TopicError, Topics

    cfg = _broker_settings(args, args.prefix)
    try:
        topics = Topics(site=args.site, prefix=cfg.prefix)
    except TopicError as exc:
        raise CliError(str(exc)) from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return run(cfg, topics, stop, idle_checkout_s=args.idle_checkout_min * 60, heartbeat=args.heartbeat_file)
    except OSError as exc:  # TLS files
        raise CliError(f"cannot use the TLS files: {exc.strerror or exc}") from exc


def cmd_stations_qr(args: argparse.Namespace) -> int:
    from formcheck.broker_admin import BrokerAdminError, load_registry
    from formcheck_protocol.topics import TopicError

    try:
        from formcheck.stations_qr import QrError, station_url, write_sheet
    except ImportError as exc:  # OpenCV and numpy come with the edge install, not the aggregator's
        raise CliError(f"formcheck stations qr draws with OpenCV, which is not installed here ({exc.name}): run it "
                       "where the edge is installed (make edge-install or make venv)") from exc

    stations = list(args.station or [])
    if args.accounts is not None:
        try:
            stations += sorted(n for n, role in load_registry(args.accounts).users.items() if role == "node")
        except BrokerAdminError as exc:
            raise CliError(str(exc)) from exc
    try:
        urls = [(node, station_url(args.url, args.site, node, args.wss_port)) for node in dict.fromkeys(stations)]
        written = write_sheet(args.output, urls)
    except (QrError, TopicError) as exc:
        raise CliError(str(exc)) from exc
    for path in written:
        print(f"wrote {path}")
    for node, url in urls:
        print(f"{node}: {url}")
    return 0


def cmd_check_secrets(args: argparse.Namespace) -> int:
    from formcheck.secrets_check import read_secrets, secret_problems

    problems = secret_problems(args.names, read_secrets(args.dir, args.names))
    if problems:
        raise CliError(f"refusing to start: {'; '.join(problems)} (files in {args.dir}; "
                       f"`formcheck deploy init-secrets` writes missing ones)")
    print(f"{len(args.names)} secrets set")
    return 0


def cmd_init_secrets(args: argparse.Namespace) -> int:
    from formcheck.secrets_check import COMPOSE_SECRETS, init_secrets

    try:
        written = init_secrets(args.dir)
    except OSError as exc:
        raise CliError(f"cannot write secrets into {args.dir}: {exc.strerror or exc}") from exc
    kept = len(COMPOSE_SECRETS) - len(written)
    print(f"{args.dir}: {len(written)} secret(s) written ({', '.join(written) or 'none'}), {kept} kept")
    return 0


def cmd_grafana_kiosk(args: argparse.Namespace) -> int:
    from formcheck.grafana_kiosk import GrafanaApi, GrafanaError, kiosk_datasource, set_up_kiosk
    from formcheck_runtime.settings import ConfigError, read_secret_file

    try:
        admin_password = read_secret_file(args.admin_password_file, "--admin-password-file")
        influx_password = read_secret_file(args.influx_password_file, "--influx-password-file")
        dashboard = json.loads(args.dashboard.read_text())
        datasource = kiosk_datasource(args.datasource.read_text(), os.environ, influx_password)
    except (OSError, ValueError, ConfigError) as exc:
        raise CliError(str(exc).splitlines()[0]) from exc
    api = GrafanaApi(args.url, args.admin_user, admin_password)
    try:
        api.wait_ready(args.wait_s)
        report = set_up_kiosk(api, args.org, dashboard, datasource)
    except GrafanaError as exc:
        raise CliError(str(exc)) from exc
    print(report.summary(args.org))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from formcheck_protocol.topics import registry_markdown

    sys.stdout.write(registry_markdown(args.prefix))
    return 0


def cmd_broker_users(args: argparse.Namespace) -> int:
    from formcheck.broker_admin import (
        BrokerAdminError,
        add_user,
        check_new_account,
        generate_password,
        list_users,
        prompt_password,
        read_password_file,
        remove_user,
        write_new_secret,
    )

    reload_hint = "reload the broker to apply: systemctl reload mosquitto (or kill -HUP its pid)"
    try:
        if args.users_command == "list":
            for account in list_users(args.dir):
                print(f"{account.name}\t{account.role}" + ("" if account.has_password else "\t(no password)"))
            return 0
        if args.users_command == "remove":
            role = remove_user(args.dir, args.name, owner=args.owner)
            print(f"removed {role} account {args.name!r}; {reload_hint}")
            return 0
        check_new_account(args.dir, args.name, args.role)
        generated: Path | None = args.generate_password_to
        if generated is not None:
            password = generate_password()
            write_new_secret(generated, password)
            source = f"generated, written to {generated} (mode 0600)"
        elif args.password_file is not None:
            password = read_password_file(args.password_file)
            source = f"from {args.password_file}"
        else:
            password = prompt_password()
            source = "from standard input"
        try:
            add_user(args.dir, args.name, args.role, password, owner=args.owner, site=args.site)
        except BrokerAdminError:
            if generated is not None:
                generated.unlink(missing_ok=True)
            raise
    except BrokerAdminError as exc:
        raise CliError(str(exc)) from exc
    print(f"added {args.role} account {args.name!r} (password {source}); {reload_hint}")
    return 0


def _read_first_line(path: Path, what: str) -> str:
    from formcheck_runtime.settings import ConfigError, read_secret_file

    try:
        return read_secret_file(path, what)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def cmd_member_erase(args: argparse.Namespace) -> int:
    """Erase one member: InfluxDB series, the retained notification, the broker account (see member_erase)."""
    from formcheck.broker_admin import BrokerAdminError, list_users, load_registry, remove_user
    from formcheck.member_erase import BrokerSession, CheckedInError, EraseError, InfluxEraser, summary
    from formcheck_protocol.topics import TopicError, Topics, level
    from formcheck_runtime.settings import ConfigError

    member = args.member
    try:
        level(member, "member id")
        topics = Topics(site=args.site, prefix=args.prefix)
    except TopicError as exc:
        raise CliError(str(exc)) from exc
    if member == "guest":
        raise CliError("'guest' is not a member: it stands for reps done without a check-in")
    if args.accounts is not None:
        try:
            role = load_registry(args.accounts).users.get(member)
        except BrokerAdminError as exc:
            raise CliError(str(exc)) from exc
        if role is not None and role != "member":
            raise CliError(f"{member!r} is a {role} account in {args.accounts}, not a member: nothing erased")
    influx_password = (_read_first_line(args.influx_password_file, "--influx-password-file")
                       if args.influx_password_file else None)
    cfg = _broker_settings(args, args.prefix)
    try:
        broker = BrokerSession(cfg, topics)
    except ConfigError as exc:  # the password file
        raise CliError(str(exc)) from exc
    except OSError as exc:  # TLS files
        raise CliError(f"cannot use the TLS files: {exc.strerror or exc}") from exc
    try:
        broker.connect()
        stations = broker.check_ins(member)
        if stations:
            raise CheckedInError(f"member {member!r} is checked in at {', '.join(stations)}: check them out first "
                                 f"(formcheck checkout --node {stations[0]}); nothing erased")
        eraser = InfluxEraser(args.influx, args.database, args.influx_username, influx_password)
        try:
            removed = eraser.erase(member).removed
        finally:
            eraser.close()
        print(f"InfluxDB {args.database}: " + (f"removed {summary(removed)} points of member {member!r}"
                                               if removed else f"nothing stored for member {member!r}"))
        for topic in broker.clear_retained(member):
            print(f"broker: cleared the retained message on {topic}")
    except EraseError as exc:
        raise CliError(str(exc)) from exc
    finally:
        broker.close()
    if args.accounts is None:
        print("broker account: not checked (give --accounts DIR to remove it)")
        return 0
    try:
        if member not in {account.name for account in list_users(args.accounts)}:
            print(f"broker account: none named {member!r} in {args.accounts}")
            return 0
        remove_user(args.accounts, member, owner=args.owner)
    except BrokerAdminError as exc:
        raise CliError(str(exc)) from exc
    print(f"broker account: removed member account {member!r}; reload the broker to apply: "
          "systemctl reload mosquitto (or kill -HUP its pid)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="formcheck", description="Camera-based exercise form grading.")
    parser.add_argument("--version", action="version", version=f"formcheck {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    edge = sub.add_parser("edge", help="run an edge node: video → per-frame classes on MQTT")
    edge.add_argument("--config", type=Path, help="YAML config file (see --print-config)")
    edge.add_argument("--source", help="camera index, video file, rtsp/http URL, or 'picamera2'")
    edge.add_argument("--node", help="station id")
    edge.add_argument("--site", help="site id")
    edge.add_argument("--exercise", choices=["squat", "pushup", "curl", "lunge"])
    edge.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker")
    edge.add_argument("--realtime", type=_on_off, help="on: play files at their frame rate; off: as fast as possible")
    edge.add_argument("--model", type=Path, help="classifier .tflite to use instead of the committed one")
    edge.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    edge.add_argument("--print-config", action="store_true", help="print every option with its default and exit")
    edge.set_defaults(func=cmd_edge)

    models = sub.add_parser("models", help="build the pose model, train and evaluate classifiers")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    build = models_sub.add_parser("build", help="build the pose landmarker bundle from the installed mediapipe")
    build.add_argument("--out", type=Path, default=POSE_MODEL)
    build.set_defaults(func=cmd_models_build)
    train = models_sub.add_parser("train", help="train the phase/form classifiers from the data set")
    train.add_argument("--exercise", default="all", choices=["all", "squat", "pushup", "curl", "lunge"])
    train.set_defaults(func=cmd_models_train)
    evaluate = models_sub.add_parser(
        "evaluate", help="held-out evaluation (split by clip/person), baselines, figures and models/REPORT_*.md"
    )
    evaluate.add_argument("--exercise", default="all", choices=["all", "squat", "pushup", "curl", "lunge"])
    evaluate.set_defaults(func=cmd_models_evaluate)
    evaluate_reps = models_sub.add_parser(
        "evaluate-reps", help="rep counting, leave one source out (settings chosen without it): models/REPORT_reps.md"
    )
    evaluate_reps.set_defaults(func=cmd_models_evaluate_reps)

    demo = sub.add_parser("demo", help="the whole loop on this machine: broker, database, aggregator, two edge nodes")
    demo.add_argument("--clip", type=Path, help="play this video at one station instead of the two sample clips")
    demo.add_argument("--realtime", type=_on_off, default=True, help="play at the clip's frame rate (default on)")
    demo.set_defaults(func=cmd_demo)

    analyze = sub.add_parser("analyze", help="grade the reps in a video without broker or database")
    analyze.add_argument("video", type=Path)
    analyze.add_argument("--exercise", choices=["squat", "pushup", "curl", "lunge"],
                         help="default: recognised from the pose within the first rep")
    analyze.add_argument("--json", action="store_true", help="print a list of sets, each with its reps")
    analyze.set_defaults(func=cmd_analyze)

    agg = sub.add_parser("aggregator", help="run the aggregator: frames → reps, sets, InfluxDB, notifications")
    agg.add_argument("--config", type=Path, help="YAML config file (see --print-config)")
    agg.add_argument("--site", help="site id")
    agg.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker")
    agg.add_argument("--influx", help="InfluxDB URL, e.g. http://localhost:8086")
    agg.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    agg.add_argument("--print-config", action="store_true", help="print every option with its default and exit")
    agg.add_argument("--print-schema", action="store_true",
                     help="print the InfluxQL that creates the database and its retention policies (for an "
                     "administrator, when the aggregator writes without admin rights) and exit")
    agg.set_defaults(func=cmd_aggregator)

    for name, func, text in (("checkin", cmd_checkin, "check a member in at a station"),
                             ("checkout", cmd_checkout, "check the member out of a station")):
        session = sub.add_parser(name, help=text)
        session.add_argument("--node", required=True, help="station id")
        session.add_argument("--site", default="main", help="site id")
        session.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker (default localhost)")
        session.add_argument("--username", help="broker account (staff role; or FORMCHECK_MQTT__USERNAME)")
        session.add_argument("--password-file", type=Path,
                             help="file whose first line is the password (or FORMCHECK_MQTT__PASSWORD)")
        session.add_argument("--tls-ca", type=Path, help="CA certificate of the broker: connect with TLS (port 8883)")
        if name == "checkin":
            session.add_argument("--member", required=True, help="member id")
            session.add_argument("--exercise", choices=["squat", "pushup", "curl", "lunge"],
                                 help="default: the node recognises it from the pose within the first rep")
        session.set_defaults(func=func)

    service = sub.add_parser("checkin-service", help="self check-in: members' start / stop from the member page "
                             "become stations' sessions (broker account of role checkin)")
    service.add_argument("--site", default="main", help="site id")
    service.add_argument("--prefix", help="topic prefix (default gym)")
    service.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker (default localhost)")
    service.add_argument("--username", help="broker account (checkin role; or FORMCHECK_MQTT__USERNAME)")
    service.add_argument("--password-file", type=Path,
                         help="file whose first line is the password (or FORMCHECK_MQTT__PASSWORD)")
    service.add_argument("--tls-ca", type=Path, help="CA certificate of the broker: connect with TLS (port 8883)")
    service.add_argument("--idle-checkout-min", type=float, default=10.0,
                         help="check a self check-in out after this many minutes without a rep (default 10)")
    service.add_argument("--heartbeat-file", type=Path, help="touched every second while connected (health check)")
    service.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    service.set_defaults(func=cmd_checkin_service)

    stations = sub.add_parser("stations", help="station tools")
    stations_sub = stations.add_subparsers(dest="stations_command", required=True, metavar="ACTION")
    qr = stations_sub.add_parser("qr", help="a printable A4 sheet (PDF or PNG) with one QR code per station: it "
                                 "opens the member page on that station")
    qr.add_argument("--url", required=True, help="the member page: https://BROKER:9001/ (docker compose) or "
                    "http://BROKER:8080/ (Debian's broker; docs/deploy.md)")
    qr.add_argument("--site", default="main", help="site id")
    qr.add_argument("--station", action="append", help="station id (repeat for several)")
    qr.add_argument("--accounts", type=Path, metavar="DIR", help="every node account of this broker account "
                    "directory (users.yaml) gets a code")
    qr.add_argument("--wss-port", type=int, help="with an http:// page: the broker's secure websockets port when "
                    "it is not 9001")
    qr.add_argument("--output", "--out", "-o", type=Path, default=Path("stations-qr.pdf"),
                    help="the sheet: NAME.pdf (every page in one file) or NAME.png (NAME-2.png ... for more pages)")
    qr.set_defaults(func=cmd_stations_qr)

    broker = sub.add_parser("broker", help="production broker administration")
    broker_sub = broker.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    users = broker_sub.add_parser("users", help="broker accounts: password file, role registry, generated ACL")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    owner_help = ("owner of the written files, a user or UID[:GID] (default: 'mosquitto' when run as root, "
                  "else unchanged)")
    users_add = users_sub.add_parser("add", help="create an account (names are unique across roles)")
    users_add.add_argument("name", help="account name; a node's or member's name is its id in topics")
    users_add.add_argument("--role", required=True,
                           choices=["node", "aggregator", "staff", "display", "member", "operator", "checkin"],
                           help="display: read-only (wall and station screens); operator: for 'formcheck member "
                           "erase' (reads check-ins, clears members' notifications); checkin: for 'formcheck "
                           "checkin-service' (members' own start / stop)")
    users_add.add_argument("--site", help="the gym's site id, set with the first account (default main); every "
                           "right is under gym/SITE/")
    users_add.add_argument("--dir", required=True, type=Path, help="directory of users.yaml, passwd and acl")
    password = users_add.add_mutually_exclusive_group()
    password.add_argument("--password-file", type=Path, help="read the password from this file's first line")
    password.add_argument("--generate-password-to", type=Path, metavar="FILE",
                          help="generate a strong password and write it to this new file (mode 0600)")
    users_add.add_argument("--owner", help=owner_help)
    users_add.set_defaults(func=cmd_broker_users)
    users_remove = users_sub.add_parser("remove", help="delete an account")
    users_remove.add_argument("name")
    users_remove.add_argument("--dir", required=True, type=Path, help="directory of users.yaml, passwd and acl")
    users_remove.add_argument("--owner", help=owner_help)
    users_remove.set_defaults(func=cmd_broker_users)
    users_list = users_sub.add_parser("list", help="print every account's name and role (never passwords)")
    users_list.add_argument("--dir", required=True, type=Path, help="directory of users.yaml, passwd and acl")
    users_list.set_defaults(func=cmd_broker_users)

    member = sub.add_parser("member", help="a member's personal data")
    member_sub = member.add_subparsers(dest="member_command", required=True, metavar="ACTION")
    naming = member_sub.add_parser("name", help="set the name a member appears by on station screens (staff account)")
    naming.add_argument("member", help="member id (the member's account name)")
    naming.add_argument("name", help="display name, 1-40 characters")
    naming.add_argument("--site", default="main", help="site id")
    naming.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker (default localhost)")
    naming.add_argument("--username", help="broker account (staff role; or FORMCHECK_MQTT__USERNAME)")
    naming.add_argument("--password-file", type=Path,
                        help="file whose first line is the password (or FORMCHECK_MQTT__PASSWORD)")
    naming.add_argument("--tls-ca", type=Path, help="CA certificate of the broker: connect with TLS (port 8883)")
    naming.set_defaults(func=cmd_member_name)
    erase = member_sub.add_parser(
        "erase", help="remove a member's reps, sets, check-ins and checkpoints from InfluxDB, clear their retained "
        "notification and remove their broker account (refused while they are checked in)")
    erase.add_argument("member", help="member id")
    erase.add_argument("--site", default="main", help="site id")
    erase.add_argument("--prefix", default="gym", help="topic prefix")
    erase.add_argument("--influx", default="http://127.0.0.1:8086", help="InfluxDB URL (v1 API)")
    erase.add_argument("--database", default="formcheck", help="InfluxDB database")
    erase.add_argument("--influx-username", help="InfluxDB account with READ and WRITE on the database (no admin)")
    erase.add_argument("--influx-password-file", type=Path, help="file whose first line is its password")
    erase.add_argument("--broker", type=_broker, help="HOST[:PORT] of the MQTT broker (default localhost)")
    erase.add_argument("--username", help="broker account of the operator role (or FORMCHECK_MQTT__USERNAME)")
    erase.add_argument("--password-file", type=Path,
                       help="file whose first line is the password (or FORMCHECK_MQTT__PASSWORD)")
    erase.add_argument("--tls-ca", type=Path, help="CA certificate of the broker: connect with TLS (port 8883)")
    erase.add_argument("--accounts", type=Path, metavar="DIR",
                       help="the broker's account directory (users.yaml, passwd, acl): remove the member's account")
    erase.add_argument("--owner", help=owner_help)
    erase.set_defaults(func=cmd_member_erase)

    deploy = sub.add_parser("deploy", help="deployment checks")
    deploy_sub = deploy.add_subparsers(dest="deploy_command", required=True, metavar="CHECK")
    secrets = deploy_sub.add_parser("check-secrets", help="fail unless every named secret file holds a real "
                                    "secret (present, not an example value, at least 12 characters)")
    secrets.add_argument("--dir", required=True, type=Path, help="directory of the secret files (/run/secrets)")
    secrets.add_argument("names", nargs="+", metavar="NAME")
    secrets.set_defaults(func=cmd_check_secrets)
    init = deploy_sub.add_parser("init-secrets", help="write a random secret into every missing secret file "
                                 "of docker-compose.yml (existing ones are kept)")
    init.add_argument("--dir", required=True, type=Path, help="the compose project's secrets directory")
    init.set_defaults(func=cmd_init_secrets)
    kiosk = deploy_sub.add_parser("grafana-kiosk", help="give the wall display a read-only Grafana organisation "
                                  "holding only the gym-floor dashboard (docs/deploy.md)")
    kiosk.add_argument("--url", default="http://localhost:3000", help="Grafana's base URL")
    kiosk.add_argument("--org", default="Gym floor", help="the kiosk organisation (GF_AUTH_ANONYMOUS_ORG_NAME)")
    kiosk.add_argument("--admin-user", default="admin", help="a Grafana server admin")
    kiosk.add_argument("--admin-password-file", required=True, type=Path)
    kiosk.add_argument("--dashboard", required=True, type=Path, help="the gym-floor dashboard JSON")
    kiosk.add_argument("--datasource", required=True, type=Path, help="the data source provisioning YAML")
    kiosk.add_argument("--influx-password-file", required=True, type=Path, help="the read-only InfluxDB password")
    kiosk.add_argument("--wait-s", type=float, default=120.0, help="how long to wait for Grafana to answer")
    kiosk.set_defaults(func=cmd_grafana_kiosk)

    topics = sub.add_parser("topics", help="print the MQTT topic registry as markdown")
    topics.add_argument("--prefix", default="gym")
    topics.set_defaults(func=cmd_topics)
    return parser


# Third-party modules an install may lack on purpose (docs/architecture.md, "Install units") -> the extra with them.
EXTRA_OF_MODULE = {"cv2": "edge", "numpy": "edge", "mediapipe": "edge", "ai_edge_litert": "edge",
                   "flatbuffers": "edge", "grafana_foundation_sdk": "dashboards", "psutil": "dev",
                   "tensorflow": "train", "keras": "train", "matplotlib": "train"}


def missing_extra(exc: ModuleNotFoundError, command: str) -> str | None:
    """One line for a command run in an install without its extra (the aggregator image has no OpenCV), or None."""
    extra = EXTRA_OF_MODULE.get((exc.name or "").split(".", maxsplit=1)[0])
    if extra is None:
        return None
    where = " (a station: make edge-install, from requirements/edge.txt)" if extra == "edge" else ""
    return (f"'formcheck {command}' needs the {extra} packages, and {exc.name} is not installed here: "
            f"pip install 'formcheck[{extra}]'{where}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "log_level", None) or "INFO")
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CliError, DataMissingError) as exc:
        print(f"formcheck: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        message = missing_extra(exc, args.command)
        if message is None:
            raise
        print(f"formcheck: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
