"""Capacity search benchmark: a local search over 20,000 vacancies, judged by p99 against 20 ms.

Run: ``.venv/bin/python bench/bench_capacity.py`` (about 30-60 s; traffic to 127.0.0.1 only; needs the local
PostgreSQL on 127.0.0.1:5432 for its second half — ``RCC_BENCH_POSTGRES_URL`` to point elsewhere, or
``--sqlite-only``).

One synthetic South East register of 20,000 vacancies (``registry.capacity.synth``, seed 1) is loaded into
a fresh database on each engine, then the same 200 searches (seeded: ages weighted to teenagers, 0-3 needs,
setting types in half, a fee ceiling in a third, home LAs across the region and its neighbours) run one
after another, each in its own session, as a request would:

* ``search_local`` on SQLite (WAL file, the embedded default);
* ``search_local`` on PostgreSQL (after ANALYZE, as autovacuum would do);
* ``POST /v1/capacity/search`` end to end on a real ``rcc-node serve`` (SQLite, one worker): bearer token
  check, search, JSON, audit — what a commissioner's client sees (for information; ``--no-http`` skips it).

Printed per line: p50, p95, p99 and max in ms and the mean number of results; then the figure the search
is judged by: p99 ÷ 20 ms (≤ 1.0 passes) for each engine. The load average is printed too: on a shared
machine other work inflates every figure.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlmodel import Session  # noqa: E402

from registry.capacity.models import SearchRequest, VacancyBatch, VacancyDocument  # noqa: E402
from registry.capacity.search import search_local  # noqa: E402
from registry.capacity.service import put_vacancies  # noqa: E402
from registry.capacity.synth import region_las, synth_vacancies  # noqa: E402
from registry.core.db import make_engine, upgrade, utcnow  # noqa: E402

REGION = "E12000008"
NEIGHBOURS = ("E12000007", "E12000009", "E12000006")
VACANCIES = 20_000
SEARCHES = 200
WARMUP = 20
TARGET_MS = 20.0
POSTGRES_URL = os.environ.get("RCC_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
CLI = [sys.executable, "-m", "registry.cli"]
COMMON_NEEDS = [
    "emotional-behavioural-difficulties",
    "emotional-behavioural-difficulties",
    "cse-risk",
    "cce-risk",
    "missing-episodes",
    "self-harm",
    "uasc",
    "learning-disability",
    "offending",
    "mental-disorders",
]
SETTINGS = ["childrens-home", "independent-fostering-agency", "local-authority-fostering", "residential-special-school"]


def requests(now: datetime) -> list[dict[str, object]]:
    """The same searches for every engine: seeded, shaped like a commissioner's day."""
    rng = random.Random(2026)
    home_las = [la.ons_code for la in region_las(REGION)] * 3
    home_las += [la.ons_code for region in NEIGHBOURS for la in region_las(region)]
    out = []
    for _ in range(SEARCHES + WARMUP):
        body: dict[str, object] = {
            "age": rng.choices(range(18), weights=[1] * 10 + [3] * 8)[0],
            "sex": rng.choice(["female", "male"]),
            "needs": sorted(set(rng.sample(COMMON_NEEDS, rng.choice([0, 1, 1, 2, 2, 3])))),
            "home_la": rng.choice(home_las),
            "needed_by": (now + timedelta(days=rng.randint(0, 28))).date().isoformat(),
            "reach": "region",
            "purpose": "placement-search",
        }
        if rng.random() < 0.5:
            body["setting_types"] = rng.sample(SETTINGS, rng.randint(1, 2))
        if rng.random() < 0.33:
            body["max_weekly_fee"] = rng.choice([1500, 6000, 7500])
        out.append(body)
    return out


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(label: str, samples_ms: list[float], results: list[int], cpu_ms: list[float] | None = None) -> float:
    p = {q: percentile(samples_ms, q) for q in (0.5, 0.95, 0.99)}
    line = (
        f"{label:<38} p50 {p[0.5]:6.2f}  p95 {p[0.95]:6.2f}  p99 {p[0.99]:6.2f}  max {max(samples_ms):7.2f} ms"
        f"  {sum(results) / len(results):5.1f} results"
    )
    if cpu_ms:
        line += f"   (CPU p50 {percentile(cpu_ms, 0.5):5.2f}, p99 {percentile(cpu_ms, 0.99):5.2f} ms)"
    print(line)
    return p[0.99]


def load(url: str, vacancies: list[VacancyDocument], now: datetime) -> None:
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for start in range(0, len(vacancies), 1000):
                put_vacancies(session, VacancyBatch(vacancies=vacancies[start : start + 1000]), now=now)
            session.commit()
        if engine.dialect.name == "postgresql":
            with engine.begin() as connection:
                connection.execute(text("ANALYZE capacity_vacancy"))
    finally:
        engine.dispose()


def run_service(url: str, bodies: list[dict[str, object]], now: datetime) -> tuple[list[float], list[int], list[float]]:
    """Each search in its own session, as a request has; wall time, result counts, and this thread's CPU time."""
    engine = make_engine(url)
    parsed = [SearchRequest.model_validate(body) for body in bodies]
    samples, counts, cpu = [], [], []
    try:
        for index, request in enumerate(parsed):
            started, cpu_started = time.perf_counter(), time.thread_time()
            with Session(engine) as session:
                found = search_local(session, request, now=now, node_id="rcc-bench", region_code=REGION)
            elapsed, cpu_used = (time.perf_counter() - started) * 1000, (time.thread_time() - cpu_started) * 1000
            if index >= WARMUP:
                samples.append(elapsed)
                counts.append(len(found))
                cpu.append(cpu_used)
    finally:
        engine.dispose()
    return samples, counts, cpu


def calibration_ms() -> float:
    """CPU time of a fixed pure-Python loop: ~150-200 ms on an idle core of this class; more when it is shared."""
    started = time.thread_time()
    total = 0
    for i in range(3_000_000):
        total += i
    return (time.thread_time() - started) * 1000


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"rcc_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> str:
    done = subprocess.run([*CLI, *args], capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"rcc-node {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def run_http(
    workdir: Path, vacancies: list[VacancyDocument], bodies: list[dict[str, object]], now: datetime
) -> tuple[list[float], list[int]]:
    port = free_port()
    data_dir = workdir / "node"
    base = f"http://127.0.0.1:{port}"
    cli("init", "--data-dir", str(data_dir), "--node-id", "rcc-bench", "--region-code", REGION, "--base-url", base)
    load(f"sqlite:///{data_dir / 'node.db'}", vacancies, now)
    client = json.loads(cli("clients", "add", "bench", "--role", "commissioner", "--data-dir", str(data_dir), "--json"))
    log = (workdir / "serve.log").open("wb")
    server = subprocess.Popen(
        [*CLI, "serve", "--data-dir", str(data_dir), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    samples, counts = [], []
    try:
        with httpx.Client(base_url=base, timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the node did not start; see " + str(workdir / "serve.log"))
                time.sleep(0.05)
            basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
            token = http.post(
                "/oauth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            for index, body in enumerate(bodies):
                started = time.perf_counter()
                response = http.post("/v1/capacity/search", json=body, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"search failed: {response.status_code} {response.text[:300]}")
                if index >= WARMUP:
                    samples.append(elapsed)
                    counts.append(len(response.json()["results"]))
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
    return samples, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--no-http", action="store_true", help="skip the end-to-end run on a real node")
    options = parser.parse_args()

    now = utcnow().replace(microsecond=0)
    started = time.perf_counter()
    vacancies = synth_vacancies(REGION, seed=1, now=now, count=VACANCIES)
    bodies = requests(now)
    print(
        f"{VACANCIES} synthetic vacancies in {len(region_las(REGION))} LAs; {SEARCHES} searches after {WARMUP} warm-up"
    )
    load_average = os.getloadavg()[0]
    print(
        f"(generated in {time.perf_counter() - started:.1f} s; load average {load_average:.2f}, {os.cpu_count()} CPUs)"
    )

    ratios: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rcc-bench-capacity-") as tmp:
        workdir = Path(tmp)
        sqlite_url = f"sqlite:///{workdir / 'bench.db'}"
        load(sqlite_url, vacancies, now)
        label = "search_local, SQLite"
        ratios[label] = summary(label, *run_service(sqlite_url, bodies, now)) / TARGET_MS
        if not options.sqlite_only:
            with postgres_database() as url:
                load(url, vacancies, now)
                label = "search_local, PostgreSQL"
                samples, counts, _client_cpu = run_service(url, bodies, now)  # the work is in the server process
                ratios[label] = summary(label, samples, counts) / TARGET_MS
        if not options.no_http:
            # For information: what a client sees adds auth, audit, JSON and HTTP to the search.
            summary("POST /v1/capacity/search, SQLite node", *run_http(workdir, vacancies, bodies, now))
    calibration = calibration_ms()

    print()
    for label, ratio in ratios.items():
        print(f"judged: p99 / {TARGET_MS:.0f} ms  {label:<38} {ratio:5.2f}  {'ok' if ratio <= 1 else 'OVER'}")
    print(
        f"(whole run {time.perf_counter() - started:.1f} s; load average now {os.getloadavg()[0]:.2f}; "
        f"calibration loop {calibration:.0f} ms CPU, ~170 ms on an idle core: figures above scale with it)"
    )


if __name__ == "__main__":
    main()
