"""Runs the Flower app in ``flower_app/`` on Flower's deployment engine on
loopback, once per gradcodec pipeline, and compares accuracy against the bytes
really sent on the uplink.

One SuperLink (``flower-superlink --insecure``) and two SuperNodes
(``flower-supernode --insecure --superlink 127.0.0.1:PORT``, node configs
``partition-id=K num-partitions=2``) are started on free 127.0.0.1 ports, with
a temporary FLWR_HOME (the SuperLink connection lives in its ``config.toml``;
Flower's update check, telemetry and runtime dependency installation are off).
Each pipeline is one ``flwr run <app> <connection> --stream`` on that
federation. Every process is stopped at the end, also on failure or Ctrl-C:
each is started in its own process group, and the processes Flower starts in
sessions of their own (SuperExec, ServerApp, ClientApps) are found by a marker
in their environment.

    .venv-python/bin/python core/python/examples/flower_run.py --out runs/flower \\
        --pipelines f32,co3-fp4,topk-ef-1pct --rounds 10

writes ``comparison.md`` (the table), ``comparison.json`` (everything),
``runs/<pipeline>.json`` (the ServerApp's results: accuracy per round, the
strategy's uplink records), ``logs/`` (every process's output and the
ClientApps' JSON lines of the messages they sent).

`LoopbackFederation` is importable (the tests use it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
APP_DIR = HERE / "flower_app"
ROOT = HERE.parents[2]
CONNECTION = "gradcodec-loopback"
MARKER = "GRADCODEC_FLOWER_FEDERATION"
HOST = "127.0.0.1"


class FederationError(RuntimeError):
    """A process of the federation failed, or a run did not finish in time."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        return json.dumps(os.fspath(value))  # a TOML basic string
    raise TypeError(f"run config values are bool, int, float or str, not {value!r}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class LoopbackFederation:
    """A SuperLink and ``supernodes`` SuperNodes on loopback, as a context manager.

    ``workdir`` receives ``home/`` (FLWR_HOME) and ``logs/``. ``bin_dir`` is where
    the Flower executables are (by default next to this Python); it is put first
    on PATH because the SuperLink and SuperNodes start ``flower-superexec`` by name.
    ``env`` adds environment variables for every process (e.g. PYTHONPATH).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        supernodes: int = 2,
        *,
        bin_dir: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.home = self.workdir / "home"
        self.logs = self.workdir / "logs"
        self.supernodes = supernodes
        self.bin_dir = Path(bin_dir) if bin_dir is not None else Path(sys.executable).parent
        self.start_timeout = start_timeout
        self.token = uuid.uuid4().hex
        self.env = {
            **os.environ,
            **(env or {}),
            "FLWR_HOME": str(self.home),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_DISABLE_UPDATE_CHECK": "1",
            "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "PYTHONUNBUFFERED": "1",
            MARKER: self.token,
        }
        self.superlink_port: int | None = None
        self._processes: list[tuple[str, subprocess.Popen, Path]] = []
        self._runs = 0

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self) -> LoopbackFederation:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Starts the SuperLink and the SuperNodes and waits until they listen."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        link_port, *node_ports = free_ports(1 + self.supernodes)
        self.superlink_port = link_port
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "{HOST}:{link_port}"\ninsecure = true\n'
        )
        self._spawn(
            "superlink",
            [
                self._bin("flower-superlink"),
                "--insecure",
                "--host",
                HOST,
                "--port",
                str(link_port),
                "--disable-runtime-dependency-installation",
            ],
        )
        self._wait_listening("superlink", link_port)
        for index, port in enumerate(node_ports):
            self._spawn(
                f"supernode-{index}",
                [
                    self._bin("flower-supernode"),
                    "--insecure",
                    "--superlink",
                    f"{HOST}:{link_port}",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--node-config",
                    f"partition-id={index} num-partitions={self.supernodes}",
                ],
            )
        for index, port in enumerate(node_ports):
            self._wait_listening(f"supernode-{index}", port)

    def stop(self, grace: float = 10.0) -> None:
        """Stops every process of the federation (TERM, then KILL after ``grace`` s)."""
        for _name, process, _log in reversed(self._processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for _name, process, _log in self._processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()
        self._sweep(grace)

    def leftovers(self) -> list[int]:
        """PIDs of live processes that carry this federation's marker."""
        needle = f"{MARKER}={self.token}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and needle in environ.split(b"\0"):
                found.append(int(entry.name))
        return found

    def _sweep(self, grace: float) -> None:
        """Ends the processes Flower started in sessions of their own."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.leftovers()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while self.leftovers() and time.monotonic() < deadline:
                time.sleep(0.2)

    # -- runs ----------------------------------------------------------------

    def run(
        self,
        app_dir: str | os.PathLike,
        run_config: Mapping[str, Any],
        *,
        timeout: float,
        done: Path | None = None,
    ) -> Path:
        """``flwr run app_dir <connection> --stream`` with ``run_config`` (written
        to a TOML file); waits at most ``timeout`` seconds. With ``done``, the run
        succeeds when that file exists afterwards. Returns the run's log file."""
        self._check_alive()
        self._runs += 1
        config_file = self.workdir / f"run-{self._runs}-config.toml"
        config_file.write_text(
            "".join(f"{key} = {_toml_value(value)}\n" for key, value in run_config.items())
        )
        log_path = self.logs / f"run-{self._runs}.log"
        command = [
            self._bin("flwr"),
            "run",
            str(app_dir),
            CONNECTION,
            "--stream",
            "--run-config",
            str(config_file),
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
                raise FederationError(
                    f"flwr run did not finish within {timeout:.0f} s\n{self._report(log_path)}"
                ) from None
        if code != 0 or (done is not None and not done.is_file()):
            raise FederationError(
                f"flwr run exited with {code}"
                + (f" without writing {done}" if done is not None and not done.is_file() else "")
                + f"\n{self._report(log_path)}"
            )
        return log_path

    # -- helpers ---------------------------------------------------------------

    def _bin(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.is_file():
            raise FederationError(f"{path} not found: is flwr installed next to {sys.executable}?")
        return str(path)

    def _spawn(self, name: str, command: Sequence[str]) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(command),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.workdir,
                start_new_session=True,
            )
        self._processes.append((name, process, log_path))

    def _wait_listening(self, name: str, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex((HOST, port)) == 0:
                    return
            time.sleep(0.2)
        raise FederationError(
            f"{name} does not listen on {HOST}:{port} after {self.start_timeout:.0f} s\n"
            + self._report()
        )

    def _check_alive(self) -> None:
        for name, process, log_path in self._processes:
            if process.poll() is not None:
                raise FederationError(
                    f"{name} exited with {process.returncode}:\n{_tail(log_path)}"
                )

    def _report(self, run_log: Path | None = None) -> str:
        parts = []
        if run_log is not None:
            parts.append(f"--- {run_log.name}\n{_tail(run_log)}")
        for name, _process, log_path in self._processes:
            parts.append(f"--- {name}\n{_tail(log_path, 15)}")
        return "\n".join(parts)


# -- the comparison -------------------------------------------------------------


def fetch_data() -> str:
    """The Fashion-MNIST folder printed by scripts/fetch-data."""
    script = ROOT / "scripts" / "fetch-data"
    done = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def check_records(result: Mapping[str, Any], client_log: Path) -> int:
    """Checks that every server record is a message a client logged (size and
    SHA-256); returns the number of messages checked."""
    sent = {}
    if client_log.is_file():
        for line in client_log.read_text().splitlines():
            entry = json.loads(line)
            sent[(entry["node_id"], entry["server_round"])] = entry
    for record in result["records"]:
        entry = sent.get((record["node_id"], record["round"]))
        if entry is None or (entry["bytes"], entry["sha256"]) != (
            record["bytes"],
            record["sha256"],
        ):
            raise SystemExit(
                f"{result['pipeline']}: round {record['round']} node {record['node_id']}: the "
                f"server recorded {record['bytes']} B, the client logged {entry}"
            )
    return len(result["records"])


def summarize(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary row per run, with savings against the f32 run if there is one."""
    rows = []
    for result in results:
        per_round = result["per_round"]
        total = sum(r["uplink_bytes"] for r in per_round)
        entries = sum(r["uplink_entries"] for r in per_round)
        rows.append(
            {
                "pipeline": result["pipeline"],
                "payload": result["payload"],
                "initial_accuracy": result["initial"].get("accuracy"),
                "final_accuracy": per_round[-1].get("accuracy"),
                "best_accuracy": max(r.get("accuracy", 0.0) for r in per_round),
                "uplink_bytes": total,
                "uplink_bytes_per_round": total / len(per_round),
                "bits_per_entry": 8 * total / entries if entries else None,
                "seconds": result["seconds"],
                "messages_checked": result["messages_checked"],
            }
        )
    baseline = next((row for row in rows if row["pipeline"] == "f32"), None)
    for row in rows:
        row["times_smaller_than_f32"] = (
            baseline["uplink_bytes"] / row["uplink_bytes"]
            if baseline and row["uplink_bytes"]
            else None
        )
    return {"rows": rows}


def markdown(results: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], setup: str) -> str:
    """The comparison table and the accuracy and bytes of every round."""
    lines = [
        "# Flower deployment engine on loopback: gradcodec on the uplink",
        "",
        setup,
        "",
        "| pipeline | payload | final accuracy | best accuracy | uplink bytes (all rounds) "
        "| bytes per round | bits per entry | f32 bytes / bytes | messages checked | run s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary["rows"]:
        factor = row["times_smaller_than_f32"]
        lines.append(
            f"| {row['pipeline']} | {row['payload']} | {row['final_accuracy']:.4f} "
            f"| {row['best_accuracy']:.4f} | {row['uplink_bytes']:,} "
            f"| {row['uplink_bytes_per_round']:,.0f} | {row['bits_per_entry']:.3f} "
            f"| {'' if factor is None else f'{factor:.1f}'} | {row['messages_checked']} "
            f"| {row['seconds']:.0f} |"
        )
    lines += ["", "Per round (test accuracy / uplink bytes of all nodes):", ""]
    header = "| round | " + " | ".join(r["pipeline"] for r in results) + " |"
    lines += [header, "|---:|" + "---:|" * len(results)]
    start = " | ".join(f"{r['initial'].get('accuracy', float('nan')):.4f} / 0" for r in results)
    lines.append(f"| 0 | {start} |")
    for index in range(max(len(r["per_round"]) for r in results)):
        cells = []
        for result in results:
            if index < len(result["per_round"]):
                entry = result["per_round"][index]
                cells.append(
                    f"{entry.get('accuracy', float('nan')):.4f} / {entry['uplink_bytes']:,}"
                )
            else:
                cells.append("")
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--pipelines", default="f32,co3-fp4,topk-ef-1pct")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--data", help="Fashion-MNIST folder (default: scripts/fetch-data), or 'synthetic'"
    )
    parser.add_argument("--model", default="mlp", choices=["mlp", "lenet5"])
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=0, help="examples per node (0: all)")
    parser.add_argument("--test-limit", type=int, default=0, help="test examples (0: all)")
    parser.add_argument("--supernodes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per run")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary FLWR_HOME")
    args = parser.parse_args(argv)

    pipelines = [name.strip() for name in args.pipelines.split(",") if name.strip()]
    data = args.data or fetch_data()
    out = args.out.resolve()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gradcodec-flower-"))

    def interrupted(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, interrupted)
    results = []
    try:
        with LoopbackFederation(workdir, args.supernodes) as federation:
            for name in pipelines:
                result_file = out / "runs" / f"{name}.json"
                client_log = out / "logs" / f"{name}-clients.jsonl"
                result_file.unlink(missing_ok=True)
                client_log.unlink(missing_ok=True)
                print(f"flower_run: {name}: {args.rounds} rounds ...", flush=True)
                run_log = federation.run(
                    APP_DIR,
                    {
                        "pipeline": name,
                        "num-server-rounds": args.rounds,
                        "num-nodes": args.supernodes,
                        "model": args.model,
                        "local-epochs": args.local_epochs,
                        "batch-size": args.batch_size,
                        "lr": args.lr,
                        "seed": args.seed,
                        "data-dir": data,
                        "train-limit": args.train_limit,
                        "test-limit": args.test_limit,
                        "out-file": str(result_file),
                        "client-log": str(client_log),
                    },
                    timeout=args.timeout,
                    done=result_file,
                )
                shutil.copy(run_log, out / "logs" / f"{name}-run.log")
                result = json.loads(result_file.read_text())
                result["messages_checked"] = check_records(result, client_log)
                final = result["per_round"][-1]
                print(
                    f"flower_run: {name}: accuracy {final.get('accuracy', float('nan')):.4f}, "
                    f"{sum(r['uplink_bytes'] for r in result['per_round']):,} uplink bytes, "
                    f"{result['seconds']:.0f} s",
                    flush=True,
                )
                results.append(result)
    finally:
        for log in (workdir / "logs").glob("*.log"):
            with contextlib.suppress(OSError):
                shutil.copy(log, out / "logs" / log.name)
        if not args.keep_home:
            shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(results)
    source = "synthetic data" if data == "synthetic" else "Fashion-MNIST"
    setup = (
        f"{args.model}, {source}, {args.supernodes} SuperNodes (IID partitions"
        f"{f', {args.train_limit} examples each' if args.train_limit else ''}), "
        f"{args.rounds} rounds of FedAvg, {args.local_epochs} local epoch(s) of SGD "
        f"(lr {args.lr}, batch {args.batch_size}), seed {args.seed}. Uplink bytes are the "
        "gradcodec messages the server decoded (each also logged by its client with the "
        "same size and SHA-256: 'messages checked'); the downlink is uncompressed."
    )
    (out / "comparison.json").write_text(
        json.dumps({"setup": setup, "summary": summary, "runs": results}, indent=2) + "\n"
    )
    table = markdown(results, summary, setup)
    (out / "comparison.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
